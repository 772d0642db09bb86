"""What the operator scripts (publish_notification.py, rabbitmq_inspector.py,
replay_dead_letters.py, demo.py) share.

The broker target from push_service's settings and the command line, connecting to
it, publishing with a publisher confirm, and reporting any failure as one line
`<script>: error: <message>` on stderr (the URL's password never shown) with the
script's exit status.

Not a script: the scripts import it as a sibling module (a script's own directory is
first on sys.path when it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec

from push_service.config import Settings, redact_url
from push_service.errors import ConfigError

EXIT_BROKER = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# What talking to the broker raises when it is unreachable, refuses or goes away.
BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError)


class ScriptError(Exception):
    """A failure to report on one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_BROKER) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """The broker and queue a script talks to; `timeout` bounds each wait for the broker."""

    url: str
    queue: str
    timeout: float
    settings: Settings

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    def scrub(self, text: str) -> str:
        """Remove the URL's password from a text that may quote it (errors, reprs)."""
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def describe_error(self, exc: BaseException) -> str:
        """`<ExceptionType>: <message>`, scrubbed."""
        return f"{type(exc).__name__}: {self.scrub(str(exc) or type(exc).__name__)}"


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """--url, --queue, --json, --timeout and -v, as the broker scripts take them."""
    parser.add_argument("--url", help="AMQP URL (default: RABBITMQ_URL)")
    parser.add_argument("--queue", help="main queue name (default: RABBITMQ_QUEUE_NAME)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the broker (default 5)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log AMQP library details")


def load_settings(env_file: Path | str = ".env") -> Settings:
    try:
        return Settings.from_env(env_file=env_file)
    except ConfigError as exc:
        raise ScriptError(f"configuration error: {exc}", EXIT_USAGE) from None


def resolve_target(args: argparse.Namespace) -> Target:
    """The settings, with the --url, --queue and --timeout arguments applied."""
    settings = load_settings()
    url = args.url or settings.rabbitmq_url
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise ScriptError(
            f"--url must be an amqp:// or amqps:// URL, got {redact_url(url)!r}", EXIT_USAGE
        )
    queue = args.queue or settings.rabbitmq_queue_name
    return Target(url=url, queue=queue, timeout=args.timeout, settings=settings)


async def connect(target: Target) -> AbstractConnection:
    try:
        async with asyncio.timeout(target.timeout):
            return await aiormq.connect(target.url)
    except TimeoutError:
        raise ScriptError(
            f"cannot connect to RabbitMQ at {target.shown_url}: no answer in {target.timeout:g}s"
        ) from None
    except BROKER_ERRORS as exc:
        raise ScriptError(
            f"cannot connect to RabbitMQ at {target.shown_url}: {target.describe_error(exc)}"
        ) from None


async def publish_with_confirm(
    channel: AbstractChannel,
    target: Target,
    routing_key: str,
    body: bytes,
    properties: spec.Basic.Properties,
) -> None:
    """Publish (mandatory) on a confirming channel; a ScriptError unless the broker acks it.

    mandatory: a message no queue takes comes back as an error instead of being
    confirmed and dropped.
    """
    try:
        async with asyncio.timeout(target.timeout):
            confirmation = await channel.basic_publish(
                body, routing_key=routing_key, properties=properties, mandatory=True
            )
    except TimeoutError:
        raise ScriptError(
            f"RabbitMQ at {target.shown_url} did not confirm within {target.timeout:g}s"
        ) from None
    except aiormq.exceptions.PublishError:
        raise ScriptError(f"RabbitMQ returned the message: queue {routing_key!r} is gone") from None
    if not isinstance(confirmation, spec.Basic.Ack):
        raise ScriptError(f"RabbitMQ refused the message ({type(confirmation).__name__})")


@contextlib.asynccontextmanager
async def connected(target: Target) -> AsyncIterator[AbstractConnection]:
    """A connection, closed after; a broker failure inside becomes a one-line ScriptError."""
    connection = await connect(target)
    try:
        yield connection
    except TimeoutError:
        raise ScriptError(f"RabbitMQ at {target.shown_url} did not answer in time") from None
    except BROKER_ERRORS as exc:
        raise broker_error(target, exc) from None
    finally:
        await close_quietly(connection, target.timeout)


def broker_error(target: Target, exc: BaseException) -> ScriptError:
    """The report of an unexpected broker failure after connecting."""
    return ScriptError(f"RabbitMQ error: {target.describe_error(exc)}")


async def close_quietly(closable: AbstractConnection | AbstractChannel, timeout: float) -> None:
    """Close a connection or channel; a broker that is gone or does not answer is ignored."""
    try:
        async with asyncio.timeout(timeout):
            await closable.close()
    except (TimeoutError, *BROKER_ERRORS):
        pass


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by the first Ctrl-C or SIGTERM; a second Ctrl-C interrupts at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def first() -> None:
        stop.set()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, first)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def fail(prog: str, message: str, code: int) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_script(prog: str, verbose: bool, body: Callable[[], int]) -> int:
    """Run a script's body, reporting a ScriptError or Ctrl-C as one line and its exit status.

    aiormq logs connection failures itself; unless `verbose`, it is silenced so that the
    script's own line is the only report.
    """
    logging.getLogger("aiormq").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if verbose:
        logging.basicConfig(level=logging.DEBUG)
    try:
        return body()
    except ScriptError as exc:
        fail(prog, str(exc), exc.code)
    except KeyboardInterrupt:
        fail(prog, "interrupted", EXIT_INTERRUPTED)
