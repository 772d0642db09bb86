"""Reports to the User Service, durable and off the delivery path.

report   Report: a deactivation or a registration, with its stable `report_id`
outbox   ReportQueues (the reports' queues) and ReportOutbox (confirmed publish into them)
client   UserServiceClient: one POST, and what it came to
relay    ReportRelay: consumes the reports, retries them through delay steps,
         dead-letters the ones too old, writes each outcome to its status record
"""

from push_service.reports.client import Attempt, UserServiceClient
from push_service.reports.outbox import ReportOutbox, ReportQueues
from push_service.reports.relay import ReportRelay
from push_service.reports.report import Report, deactivation, registration

__all__ = [
    "Attempt",
    "Report",
    "ReportOutbox",
    "ReportQueues",
    "ReportRelay",
    "UserServiceClient",
    "deactivation",
    "registration",
]
