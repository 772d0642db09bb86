"""Where a py-spy profile's samples go, by component of the service.

Each sample is a stack (py-spy's raw format: `func (file:line);...;func (file:line) N`,
root first, Python and native frames). It is charged to the innermost frame that
belongs to a component: the leaf of a stack is usually a library (libc's write,
OpenSSL, a C parser) whose caller tells what the work was for. Event-loop frames
(uvloop, libuv, asyncio) count only when nothing above them in the stack claims the
sample; frames of the interpreter and libc never decide.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ENCRYPTION = "encryption (http_ece, cryptography, VAPID)"
POST = "aiohttp POST and TLS"
AMQP = "AMQP (aiormq, pamqp)"
REDIS = "Redis (redis-py, status store)"
VALIDATION = "validation (models, endpoint policy)"
GLUE = "consumer/delivery glue"
METRICS = "metrics and logging"
API = "HTTP API (hypercorn, starlette)"
GC = "garbage collection"
LOOP = "event loop (uvloop, asyncio)"
OTHER = "other"
ORDER = (ENCRYPTION, POST, AMQP, REDIS, VALIDATION, GLUE, METRICS, API, GC, LOOP, OTHER)

# (prefix of the frame's file, component); the first match wins, so the more specific first.
FILES = (
    ("http_ece/", ENCRYPTION), ("cryptography/", ENCRYPTION), ("py_vapid/", ENCRYPTION),
    ("jwt/", ENCRYPTION), ("push_service/vapid.py", ENCRYPTION),
    ("aiohttp/", POST), ("aiohappyeyeballs/", POST), ("yarl/", POST), ("multidict/", POST),
    ("propcache/", POST), ("ssl.py", POST), ("asyncio/sslproto.py", POST), ("_ssl.c", POST),
    ("libssl", POST), ("_http_parser.c", POST), ("_http_writer.c", POST), ("llhttp.c", POST),
    ("_multidict.c", POST), ("_helpers_c.c", POST), ("_quoting_c.c", POST),
    ("push_service/webpush.py", POST),
    ("aiormq/", AMQP), ("pamqp/", AMQP), ("push_service/broker.py", AMQP),
    ("push_service/supervisor.py", AMQP), ("push_service/topology.py", AMQP),
    ("push_service/amqp_timestamps.py", AMQP),
    ("redis/", REDIS), ("hiredis/", REDIS), ("push_service/status", REDIS),
    ("push_service/models.py", VALIDATION), ("push_service/endpoints.py", VALIDATION),
    ("msgspec/", VALIDATION), ("pydantic", VALIDATION),
    ("push_service/metrics.py", METRICS), ("push_service/logs.py", METRICS),
    ("logging/", METRICS), ("prometheus_client/", METRICS),
    ("hypercorn/", API), ("starlette/", API), ("h11/", API), ("h2/", API), ("wsproto/", API),
    ("push_service/api", API),
    ("push_service/", GLUE), ("backoff/", GLUE),
)  # fmt: skip
# The process's entry frames are at the root of every stack: they claim nothing.
ROOTS = ("push_service/__main__.py", "push_service/main.py", "<frozen runpy>")
# Native functions whose file says nothing (uvloop is one big loop.c).
FUNCTIONS = (("SSLProtocol", POST), ("SSL_", POST), ("gc_collect", GC), ("_PyObject_GC_", GC))
LOOP_FILES = (
    "loop.c", "asyncio/", "uvloop/", "_asynciomodule.c", "selectors.py",
    "core.c", "linux.c", "stream.c", "tcp.c", "loop-watcher.c", "queue.h", "uv-common.c",
)  # fmt: skip


def parse_frame(frame: str) -> tuple[str, str]:
    """`func (path:line)` -> (func, path)."""
    name, _, where = frame.rpartition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


def _frame_component(frame: str) -> str | None:
    name, path = parse_frame(frame)
    if path.startswith(ROOTS):
        return None
    # The encryption of push_service's sender is the sender's one line that calls http_ece.
    if path.startswith("push_service/webpush.py") and name == "encrypt":
        return ENCRYPTION
    for prefix, component in FUNCTIONS:
        if name.startswith(prefix):
            return component
    for prefix, component in FILES:
        if path.startswith(prefix):
            return component
    return None


def component(stack: list[str]) -> str:
    """The component a sample (frames root first) is charged to."""
    for frame in reversed(stack):
        found = _frame_component(frame)
        if found is not None:
            return found
    for frame in stack:
        if parse_frame(frame)[1].startswith(LOOP_FILES):
            return LOOP
    return OTHER


@dataclass
class Breakdown:
    samples: int = 0
    by_component: Counter[str] = field(default_factory=Counter)
    leaves: dict[str, Counter[str]] = field(default_factory=dict)  # component -> innermost frames

    def share(self, name: str) -> float:
        return self.by_component[name] / self.samples if self.samples else 0.0


def breakdown(raw: str) -> Breakdown:
    """Summarise py-spy's raw output."""
    result = Breakdown()
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        stack, count = stack_text.split(";"), int(count_text)
        name = component(stack)
        result.samples += count
        result.by_component[name] += count
        leaf = _python_leaf(stack)
        result.leaves.setdefault(name, Counter())[leaf] += count
    return result


def _python_leaf(stack: list[str]) -> str:
    """The innermost Python frame (with the native leaf, if any) for the detail list."""
    for frame in reversed(stack):
        name, path = parse_frame(frame)
        if path.endswith(".py"):
            return f"{name} ({path})"
    return stack[-1] if stack else "?"
