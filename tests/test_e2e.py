"""End to end: real service process, RabbitMQ, Redis and web-push-testing."""

from __future__ import annotations

from tests.conftest import ServiceFactory
from tests.support import (
    PushServer,
    Rabbit,
    VapidPair,
    final_record,
    stub_server,
    unique,
    wait_until,
)


def message(notification_id: str, subscription: dict, **extra: object) -> dict:
    return {
        "notification_id": notification_id,
        "user_id": "user-1",
        "devices": [subscription],
        "title": "Hello",
        "body": "World",
        "action_url": "https://example.com/path",
        **extra,
    }


async def test_queue_message_is_delivered_decrypted_and_recorded_sent(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory()
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    notification_id = unique("n")
    await rabbit.publish(service.queue, message(notification_id, subscription, urgency="high"))

    record = await final_record(service.base_url, notification_id, 20)

    assert record["status"] == "sent"
    assert record["sent"] == 1 and record["failed"] == 0
    assert record["devices"][0]["http_status"] == 201
    assert record["devices"][0]["attempts"] == 1
    received = await pushserver.messages(client_hash)
    assert received == [
        {
            "notification_id": notification_id,
            "title": "Hello",
            "body": "World",
            "action_url": "https://example.com/path",
        }
    ]
    await service.stop()  # an unacked message would return to the queue now
    assert await rabbit.count(service.queue) == 0


async def test_expired_subscription_fails_and_user_service_is_told(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    async with stub_server() as users:
        service = await service_factory(USER_SERVICE_URL=users.base_url)
        subscription, client_hash = await pushserver.subscribe(vapid.public)
        await pushserver.expire(client_hash)
        notification_id = unique("n")
        await rabbit.publish(service.queue, message(notification_id, subscription))

        record = await final_record(service.base_url, notification_id, 20)

        assert record["status"] == "failed"
        device = record["devices"][0]
        assert device["reason"] == "subscription_gone"
        assert device["http_status"] == 410

        async def answered() -> bool:  # the report goes through the relay, off the push's path
            record = await final_record(service.base_url, notification_id, 20)
            return bool(record["devices"][0]["deactivation"] == "ok")

        await wait_until(answered, message="the User Service's answer on record")
        assert len(users.requests) == 1
        request = users.requests[0]
        assert request["path"] == "/api/v1/push-subscriptions/deactivate"
        assert request["json"].pop("report_id")
        assert request["json"] == {
            "user_id": "user-1",
            "endpoint": subscription["endpoint"],
            "reason": "subscription_gone",
            "status_code": 410,
        }


async def test_bad_messages_do_not_stall_the_consumer(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory()
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    await rabbit.publish(service.queue, b"{not json")
    missing_devices = unique("n")
    await rabbit.publish(service.queue, {"notification_id": missing_devices, "title": "x"})
    good = unique("n")
    await rabbit.publish(service.queue, message(good, subscription))

    assert (await final_record(service.base_url, good, 20))["status"] == "sent"
    bad = await final_record(service.base_url, missing_devices, 20)
    assert bad["status"] == "failed"
    assert bad["reason"].startswith("invalid_devices")
    assert len(await pushserver.messages(client_hash)) == 1
    dlq = f"{service.queue}.dlq"

    async def dead_lettered() -> bool:
        return await rabbit.count(dlq) == 2

    await wait_until(dead_lettered, message="both bad messages in the DLQ")
    dead = await rabbit.get(f"{service.queue}.dlq")
    assert dead is not None
    assert dead.body == b"{not json"
    assert str(dead.header.properties.headers["x-death-reason"]).startswith("invalid_json")
