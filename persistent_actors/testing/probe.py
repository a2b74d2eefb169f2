"""`TestProbe`: Akka.TestKit's probe, an actor whose received messages a test can expect."""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Any, Final

from persistent_actors._actor import Actor, ActorRef, outbound_form
from persistent_actors._protocol import Envelope, ProbeGet, ProbeMessage
from persistent_actors._system import ActorSystem

__all__ = ["TestProbe"]

_NOTHING: Final = object()
MAX_WAIT: Final = 1e6  # seconds: a test waits less; beyond, a mistake (or inf, NaN)


class ProbeActor(Actor):
    """Queues what it receives; hands messages to the probe's owner one `ProbeGet` at a time."""

    def __init__(self) -> None:
        self._received: deque[ProbeMessage] = deque()
        self._waiting: deque[ActorRef] = deque()

    def on_receive(self, message: Any) -> None:
        if isinstance(message, ProbeGet):
            if self._received:
                self.sender.tell(self._received.popleft())
            else:
                self._waiting.append(self.sender)
            return
        delivery = ProbeMessage(message, self.sender)
        if self._waiting:
            self._waiting.popleft().tell(delivery)
        else:
            self._received.append(delivery)


class TestProbe:
    """A test's stand-in actor: pass `ref` to the code under test, then `expect_msg`."""

    __test__ = False  # not a pytest test class

    def __init__(self, system: ActorSystem, name: str | None = None) -> None:
        if not isinstance(system, ActorSystem):
            raise TypeError(f"TestProbe needs the ActorSystem it listens in, got {system!r}")
        self._endpoint = system.endpoint
        self._correlation_id = f"probe-{uuid.uuid4().hex}"
        self._inbox = self._endpoint.register_sink(self._correlation_id)
        self._outstanding = 0
        self.ref: ActorRef = system.actor_of(ProbeActor, name=name)
        self.last_sender: ActorRef | None = None

    def receive_one(self, timeout: float = 3.0) -> Any:
        """Return the next message, or None if none came within `timeout` seconds.

        As Akka's ``ReceiveOne``, which returns null. A message that is None itself looks the
        same: `expect_msg` and `expect_no_msg` tell the two apart.
        """
        message = self._receive(timeout)
        # It returned a private sentinel object, which a caller could not test for.
        return None if message is _NOTHING else message

    def _receive(self, timeout: float) -> Any:
        """The next message, or `_NOTHING` after `timeout` seconds."""
        _check_timeout(timeout)
        if not self._inbox:
            if self._outstanding == 0:
                self._endpoint.send(self.ref.address,
                                    Envelope(outbound_form(self.ref, ProbeGet()), None,
                                             self._correlation_id))
                self._outstanding = 1
            self._endpoint.pump(time.monotonic() + timeout, lambda: bool(self._inbox))
        if not self._inbox:
            return _NOTHING
        self._outstanding = 0
        delivery: ProbeMessage = self._inbox.popleft()
        self.last_sender = delivery.sender
        return delivery.message

    def expect_msg(self, expected: Any = _NOTHING, timeout: float = 3.0) -> Any:
        """Wait up to `timeout` seconds for the next message; return it.

        Raises:
            AssertionError: nothing arrived, or it differs from `expected` (when given).

        """
        message = self._receive(timeout)
        if message is _NOTHING:
            detail = "" if expected is _NOTHING else f" (expected {expected!r})"
            raise AssertionError(f"timeout ({timeout}s) while waiting for a message{detail}")
        if expected is not _NOTHING and message != expected:
            raise AssertionError(f"expected {expected!r}, got {message!r}")
        return message

    def expect_msg_type(self, cls: type[Any], timeout: float = 3.0) -> Any:
        """Like `expect_msg`, but check only that the message is an instance of `cls`."""
        if not isinstance(cls, type | tuple):
            # Checked first: expect_msg_type(5) waited out its timeout, then blamed the wait.
            raise TypeError(f"expect_msg_type() needs a class (or a tuple of classes), got "
                            f"{cls!r}")
        message = self.expect_msg(timeout=timeout)
        if not isinstance(message, cls):
            raise AssertionError(f"expected a {cls.__qualname__}, got {message!r}")  # noqa: TRY004
        return message

    def expect_no_msg(self, timeout: float = 0.3) -> None:
        """Assert that nothing arrives within `timeout` seconds."""
        message = self._receive(timeout)
        if message is not _NOTHING:
            raise AssertionError(f"expected no message, got {message!r}")

    def reply(self, message: Any) -> None:
        """Send `message` to the sender of the last message received."""
        if self.last_sender is None:
            raise AssertionError("reply() before any message was received")
        self.last_sender.tell(message, sender=self.ref)


def _check_timeout(timeout: Any) -> None:
    # NaN waited for ever (no deadline compares past it); a str failed deep in the wait.
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or \
            not 0 <= timeout <= MAX_WAIT:
        raise ValueError(f"a probe's timeout must be a number of seconds in [0, {MAX_WAIT:g}], "
                         f"got {timeout!r}")
