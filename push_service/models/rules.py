"""The limits and patterns of the queue message, in one place.

Every pattern here is used twice: by msgspec when it validates (Python `re`,
`search`) and in the generated JSON Schema (ECMA-262 regex, also unanchored). So
they use only syntax both understand, and `(?![\\s\\S])` for "end of text": Python's
`$` also matches before a trailing newline ("id\\n", a Topic header injection), and
ECMA-262 has no `\\Z`.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from push_service.config import PAYLOAD_FORMATS as PAYLOAD_FORMATS
from push_service.config import PayloadFormat as PayloadFormat

MAX_PLAINTEXT_BYTES: Final = 3993  # 4096-byte record - 86-byte header - delimiter - 16-byte tag
MAX_TTL_SECONDS: Final = 28 * 24 * 3600
MAX_TITLE: Final = 256
MAX_BODY: Final = 2048
MAX_TAG: Final = 128
MAX_URL: Final = 2048
MAX_USER_ID: Final = 256
MAX_KEY_TEXT: Final = 200
# Chromium shows at most 2 (`Notification.maxActions`) and drops the rest silently.
MAX_ACTIONS: Final = 2
MAX_ACTION_NAME: Final = 64
MAX_ACTION_TITLE: Final = 128
MAX_VIBRATE_ENTRIES: Final = 32
MAX_LANG: Final = 35
UINT32_MAX: Final = 2**32 - 1
INT64_MAX: Final = 2**63 - 1  # msgspec's integer bounds must fit an int64
INT64_MIN: Final = -(2**63)

_END = r"(?![\s\S])"
ID_REGEX: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}" + _END
ID_PATTERN: Final = re.compile(ID_REGEX)
# Any such topic is sent: one that no push service takes as it is is mapped (webpush.topic_header).
TOPIC_REGEX: Final = r"^[A-Za-z0-9_.:-]{1,64}" + _END
VAPID_KEY_ID_REGEX: Final = r"^[A-Za-z0-9_.-]{1,32}" + _END
# A subscription's topics (an audience to send to): the same names as a message's topic.
TOPIC_NAME_REGEX: Final = TOPIC_REGEX
MAX_TOPICS: Final = 100
# No control characters anywhere: browsers drop tabs and newlines inside a URL, so
# "java\tscript:" would become a script URL after this check.
_NO_CONTROLS = r"(?![\s\S]*[\x00-\x1f\x7f])"
_HTTP_START = r"[Hh][Tt][Tt][Pp][Ss]?://[^/?#\x00-\x20]"
HTTP_URL_REGEX: Final = "^" + _NO_CONTROLS + _HTTP_START
# Icons and images may also be relative to the page's origin ("/icon.png"), but never
# carry another scheme (javascript:, data:, ...).
IMAGE_URL_REGEX: Final = "^" + _NO_CONTROLS + "(?:" + _HTTP_START + "|(?![A-Za-z][A-Za-z0-9+.-]*:))"
# A BCP 47 language tag, loosely: letters, digits and hyphens in subtags of 1-8.
LANG_REGEX: Final = r"^(?:[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)?" + _END

Urgency = Literal["very-low", "low", "normal", "high"]
Direction = Literal["auto", "ltr", "rtl"]
