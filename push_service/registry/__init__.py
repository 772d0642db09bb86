"""The subscription registry: every subscription accepted at /subscribe, in Redis.

records   Subscription (and its hash fields), Upserted
store     Registry: upsert by endpoint, find, remove, pages and fan-out chunks by
          user or topic
"""

from push_service.registry.records import Subscription, Upserted
from push_service.registry.store import MAX_PAGE, Registry

__all__ = ["MAX_PAGE", "Registry", "Subscription", "Upserted"]
