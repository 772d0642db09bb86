"""push_service: web push notifications from a RabbitMQ queue (RFC 8030, 8291, 8292)."""

__version__ = "0.1.0"
SERVICE_NAME = "push_service"
