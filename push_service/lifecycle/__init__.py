"""The subscription lifecycle and the outcomes told to others.

subscriptions   Subscriptions: /subscribe (register, re-sync, replace), unsubscribe,
                a peer's removal, and a gone subscription; each reported and announced
completion      Completion: `notification.completed` once a notification is final
"""

from push_service.lifecycle.completion import Completion
from push_service.lifecycle.subscriptions import Subscribed, SubscribeRequest, Subscriptions

__all__ = ["Completion", "SubscribeRequest", "Subscribed", "Subscriptions"]
