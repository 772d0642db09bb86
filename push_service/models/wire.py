"""The JSON that arrives, as msgspec Structs: the one definition of the queue message.

msgspec decodes and checks types, lengths, ranges and patterns in one pass; the JSON
Schema (`schema.py`) is generated from these same classes. What a Struct cannot say
(a key must be a point on P-256, the endpoint allowlist, rules across fields) is
checked in `device.py` and `constraints.py`, and said in the descriptions here.

Devices stay raw (`msgspec.Raw`) in the message so that each is decoded on its own:
a bad device fails alone as a `RejectedDevice` instead of sinking the message.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from push_service.models.rules import (
    HTTP_URL_REGEX,
    ID_REGEX,
    IMAGE_URL_REGEX,
    INT64_MAX,
    INT64_MIN,
    LANG_REGEX,
    MAX_ACTION_NAME,
    MAX_ACTION_TITLE,
    MAX_ACTIONS,
    MAX_BODY,
    MAX_KEY_TEXT,
    MAX_LANG,
    MAX_TAG,
    MAX_TITLE,
    MAX_TOPICS,
    MAX_TTL_SECONDS,
    MAX_URL,
    MAX_USER_ID,
    MAX_VIBRATE_ENTRIES,
    TOPIC_NAME_REGEX,
    TOPIC_REGEX,
    UINT32_MAX,
    VAPID_KEY_ID_REGEX,
    Direction,
    PayloadFormat,
    Urgency,
)

DEFS = "#/$defs/"  # where the schema generator puts the Structs (schema.py inlines them)
PER_DEVICE_KEYS = " Its decoded length (and the point on the curve) is checked by the service."
PER_DEVICE = (
    " Checked per device by the service: a device that breaks a rule fails alone"
    " (its status says why) and the message is still delivered to the others."
)

HttpUrl = Annotated[
    str, Meta(min_length=1, max_length=MAX_URL, pattern=HTTP_URL_REGEX, title="http(s) URL")
]
ImageUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL,
        pattern=IMAGE_URL_REGEX,
        title="image URL",
        description="An http(s) URL, or one relative to the page's origin.",
    ),
]
UserId = (
    Annotated[str, Meta(min_length=1, max_length=MAX_USER_ID)]
    | Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
)
Flag = bool | None


class SubscriptionKeys(msgspec.Struct):
    p256dh: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_KEY_TEXT,
            description="The browser's P-256 public key: base64url of the uncompressed"
            " 65-byte point." + PER_DEVICE_KEYS,
        ),
    ]
    auth: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_KEY_TEXT,
            description="The 16-byte authentication secret, base64url." + PER_DEVICE_KEYS,
        ),
    ]


class DeviceSubscription(msgspec.Struct):
    """A PushSubscription as the browser's `toJSON()` gives it (other members ignored)."""

    endpoint: Annotated[
        str,
        Meta(
            min_length=1,
            description="The push service URL: https (http only with PUSH_ALLOW_HTTP), no"
            " user information, a host on PUSH_ENDPOINT_ALLOWLIST and never a private"
            " address unless listed exactly; the allowlist cannot be said in JSON Schema.",
            extra_json_schema={"maxLength": MAX_URL},
        ),
    ]
    keys: SubscriptionKeys
    vapid_key_id: Annotated[
        Annotated[str, Meta(pattern=VAPID_KEY_ID_REGEX)] | None,
        Meta(
            description="In a queue message: the id of the service's VAPID key this"
            " subscription was made with (the registry's key_id); default: the current"
            " key, then the others. An id the service does not have fails the device."
        ),
    ] = None


TopicName = Annotated[str, Meta(pattern=TOPIC_NAME_REGEX, title="topic name")]
AnyUrl = Annotated[str, Meta(min_length=1, max_length=MAX_URL)]
AuthSecret = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_KEY_TEXT,
        description="A subscription's auth secret (base64url): the proof that it is yours.",
    ),
]


class AuthOnly(msgspec.Struct):
    auth: AuthSecret


class SubscribeBody(DeviceSubscription):
    """The body of `POST /subscribe`."""

    expiration_time: int | float | None = msgspec.field(default=None, name="expirationTime")
    user_id: UserId | None = None
    old_endpoint: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=MAX_URL,
                description="The subscription this one replaces (pushsubscriptionchange).",
            ),
        ]
        | None
    ) = None
    old_keys: AuthOnly | None = None  # the replaced subscription's auth: proof it was yours
    topics: (
        Annotated[
            list[TopicName],
            Meta(
                max_length=MAX_TOPICS,
                description="Topics to receive; sending the subscription again replaces them.",
            ),
        ]
        | None
    ) = None


class UnsubscribeBody(msgspec.Struct):
    """The body of `DELETE /subscribe`: the subscription, proven by its own auth secret."""

    endpoint: AnyUrl
    keys: AuthOnly


class NotificationAction(msgspec.Struct):
    action: Annotated[str, Meta(min_length=1, max_length=MAX_ACTION_NAME)]
    title: Annotated[str, Meta(min_length=1, max_length=MAX_ACTION_TITLE)]
    navigate: Annotated[
        HttpUrl | None,
        Meta(description="Opened when this action is clicked; default: action_url."),
    ] = None
    icon: ImageUrl | None = None


DeviceList = Annotated[
    list[Annotated[msgspec.Raw, Meta(extra_json_schema={"$ref": DEFS + "DeviceSubscription"})]],
    Meta(min_length=1, description="The subscriptions to push to." + PER_DEVICE),
]
ActionList = Annotated[
    list[NotificationAction],
    Meta(
        max_length=MAX_ACTIONS,
        description="Buttons on the notification; `action` names must be unique"
        " (not expressible in JSON Schema).",
    ),
]
VibrationPattern = Annotated[
    list[Annotated[int, Meta(ge=0, le=UINT32_MAX)]],
    Meta(max_length=MAX_VIBRATE_ENTRIES, description="Milliseconds on, off, on, ..."),
]


NotificationId = Annotated[
    Annotated[str, Meta(pattern=ID_REGEX)] | Annotated[int, Meta(ge=0, le=INT64_MAX)],
    Meta(description="Your id for the notification; a JSON integer is taken as its digits."),
]


SendAt = Annotated[
    Annotated[str, Meta(min_length=1, max_length=64, title="ISO-8601 date-time with offset")]
    | Annotated[float, Meta(ge=0, title="seconds since the epoch")],
    Meta(
        description="Push no earlier than this (ISO-8601 with an offset, or epoch seconds);"
        " held in RabbitMQ until then and sent within seconds after it. At most"
        " SCHEDULE_MAX_DAYS ahead, at most a minute in the past. The TTL counts from it."
    ),
]


class Audience(msgspec.Struct, kw_only=True):
    """Who receives a message, looked up in the subscription registry: one user or one topic."""

    user_id: Annotated[
        UserId | msgspec.UnsetType,
        Meta(description="Every subscription registered for this (verified) user."),
    ] = msgspec.UNSET
    topic: Annotated[
        TopicName | msgspec.UnsetType,
        Meta(description="Every subscription registered with this topic."),
    ] = msgspec.UNSET


class NotificationMessage(msgspec.Struct, kw_only=True):
    """A notification request, as peer services publish it to the queue."""

    notification_id: NotificationId
    devices: DeviceList | msgspec.UnsetType = msgspec.UNSET
    audience: Annotated[
        Audience | msgspec.UnsetType,
        Meta(
            description="Instead of devices: send to the registry's subscriptions of a user"
            " or a topic (exactly one of the two). An audience with no subscriptions is an"
            " empty audience: the record says failed with reason empty_audience."
        ),
    ] = msgspec.UNSET
    title: Annotated[str, Meta(max_length=MAX_TITLE, description="The notification's title.")]
    user_id: Annotated[
        UserId | None,
        Meta(description="Reported to the User Service with gone subscriptions."),
    ] = None
    body: Annotated[str, Meta(max_length=MAX_BODY)] | None = None
    action_url: Annotated[
        HttpUrl | None,
        Meta(
            description="Opened when the notification is clicked. Required when the"
            " payload is declarative (explicitly, or by the service's PUSH_PAYLOAD_FORMAT,"
            " which JSON Schema cannot see)."
        ),
    ] = None
    icon: ImageUrl | None = None
    badge: ImageUrl | None = None
    image: ImageUrl | None = None
    tag: Annotated[
        Annotated[str, Meta(max_length=MAX_TAG)] | None,
        Meta(description="A notification with the same tag replaces the one shown."),
    ] = None
    data: Annotated[dict[str, Any] | None, Meta(description="Passed to the page as is.")] = None
    ttl: Annotated[
        Annotated[int, Meta(ge=0, le=MAX_TTL_SECONDS)] | None,
        Meta(description="Seconds the push service keeps an undelivered push."),
    ] = None
    urgency: Urgency | None = None
    topic: Annotated[
        Annotated[str, Meta(pattern=TOPIC_REGEX)] | None,
        Meta(description="Replaces an undelivered push with the same topic."),
    ] = None
    payload_format: Annotated[
        PayloadFormat | None,
        Meta(description="What the browser receives; default: PUSH_PAYLOAD_FORMAT."),
    ] = None
    actions: ActionList | None = None
    lang: Annotated[
        Annotated[str, Meta(max_length=MAX_LANG, pattern=LANG_REGEX)] | None,
        Meta(description="Language tag of title and body, such as en or pt-BR."),
    ] = None
    dir: Direction | None = None
    require_interaction: Annotated[
        Flag, Meta(description="Stay until the user clicks or dismisses it.")
    ] = None
    renotify: Annotated[Flag, Meta(description="Alert again on replacing; needs a tag.")] = None
    silent: Annotated[Flag, Meta(description="No sound or vibration; excludes vibrate.")] = None
    vibrate: VibrationPattern | None = None
    timestamp: Annotated[
        Annotated[int, Meta(ge=0, le=INT64_MAX)] | None,
        Meta(description="Milliseconds since the epoch that the notification is about."),
    ] = None
    app_badge: Annotated[
        Annotated[int, Meta(ge=0, le=INT64_MAX)] | None,
        Meta(description="The number shown on the app's icon."),
    ] = None
    mutable: Annotated[
        Flag, Meta(description="Declarative: let the service worker change it first.")
    ] = None
    send_at: SendAt | None = None


class NotificationIdOnly(msgspec.Struct):
    """Just the id of a message, to record the failure of one that is otherwise invalid."""

    notification_id: NotificationId


MESSAGE = msgspec.json.Decoder(NotificationMessage)
PEEK = msgspec.json.Decoder(NotificationIdOnly)
DEVICE = msgspec.json.Decoder(DeviceSubscription)
SUBSCRIBE = msgspec.json.Decoder(SubscribeBody)
UNSUBSCRIBE = msgspec.json.Decoder(UnsubscribeBody)
ANY = msgspec.json.Decoder()
