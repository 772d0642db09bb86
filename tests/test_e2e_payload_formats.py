"""Both payload formats end to end: the real service, RabbitMQ, Redis and web-push-testing.

web-push-testing decrypts what it receives (RFC 8291), so what it hands back is exactly
what a browser's service worker would read.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ServiceFactory
from tests.support import PushServer, Rabbit, VapidPair, final_record, unique, wait_until
from tests.test_models_payload import VOCABULARY, declarative_with_vocabulary

DISPLAY: dict[str, Any] = {
    "title": "Your order has shipped",
    "body": "It arrives on Thursday.",
    "action_url": "https://shop.example/orders/1",
    **VOCABULARY,
}


def message(notification_id: str, subscription: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"notification_id": notification_id, "devices": [subscription], **DISPLAY, **extra}


async def test_each_format_decrypts_to_exactly_the_documented_json(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory()
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    classic, declarative = unique("classic"), unique("declarative")
    await rabbit.publish(service.queue, message(classic, subscription))
    assert (await final_record(service.base_url, classic))["status"] == "sent"
    await rabbit.publish(
        service.queue, message(declarative, subscription, payload_format="declarative")
    )
    assert (await final_record(service.base_url, declarative))["status"] == "sent"

    received = await pushserver.messages(client_hash)
    assert received == [
        {"notification_id": classic, **DISPLAY},
        declarative_with_vocabulary(
            declarative, DISPLAY["title"], DISPLAY["body"], DISPLAY["action_url"]
        ),
    ]


async def test_the_default_format_comes_from_push_payload_format(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory(PUSH_PAYLOAD_FORMAT="declarative")
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    plain: dict[str, Any] = {
        "notification_id": unique("n"),
        "devices": [subscription],
        "title": "Hello",
        "action_url": "https://example.com/",
    }
    await rabbit.publish(service.queue, plain)
    assert (await final_record(service.base_url, plain["notification_id"]))["status"] == "sent"
    [received] = await pushserver.messages(client_hash)
    assert received["web_push"] == 8030
    assert received["notification"]["navigate"] == "https://example.com/"


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"payload_format": "declarative", "action_url": None}, "missing_field"),
    ({"renotify": True, "tag": None}, "invalid_combination"),
    ({"actions": [{"action": f"a{i}", "title": "A"} for i in range(3)]}, "too_many_actions"),
    ({"actions": [{"action": "a", "title": "A", "navigate": "javascript:alert(1)"}]},
     "invalid_field"),
    ({"image": "data:image/png;base64,AAAA"}, "invalid_field"),
]  # fmt: skip


async def test_invalid_combinations_are_refused_with_their_reason(
    service_factory: ServiceFactory, pushserver: PushServer, rabbit: Rabbit, vapid: VapidPair
) -> None:
    service = await service_factory()
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    ids = []
    for overrides, _ in INVALID:
        ids.append(unique("bad"))
        await rabbit.publish(service.queue, message(ids[-1], subscription, **overrides))
    for notification_id, (_, code) in zip(ids, INVALID, strict=True):
        record = await final_record(service.base_url, notification_id)
        assert record["status"] == "failed"
        assert record["reason"].startswith(f"{code}: "), record["reason"]

    async def all_dead_lettered() -> bool:
        return await rabbit.count(f"{service.queue}.dlq") == len(INVALID)

    await wait_until(all_dead_lettered, message="every invalid message in the DLQ")
    assert await pushserver.messages(client_hash) == []
