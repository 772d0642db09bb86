"""Message bodies as they arrive: a UTF-8 BOM, and bodies too large to read on the loop.

Checking one device's key costs tens of microseconds: a 10,000-device message read on
the event loop would hold up heartbeats and every other push for half a second, so a
body over `LARGE_BODY_BYTES` (about 200 devices) is read in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
BOM = b"\xef\xbb\xbf"
LARGE_BODY_BYTES = 64 * 1024


def without_bom(body: bytes) -> bytes:
    """RFC 8259 lets a parser ignore a UTF-8 BOM; many producers emit one."""
    return body[len(BOM) :] if body.startswith(BOM) else body


async def off_loop(read: Callable[[bytes], T], body: bytes) -> T:
    """`read(body)`: at once when the body is small, in a thread when it is large."""
    if len(body) < LARGE_BODY_BYTES:
        return read(body)
    return await asyncio.to_thread(read, body)
