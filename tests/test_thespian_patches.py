"""What `persistent_actors._thespian.wakeups` changes in thespian's simple base, pinned; and the
transport internals `persistent_actors._thespian.frame_auth` patches.

Wakeups must still fire in deadline order (ties in the order they were set), none lost or
fired early; the send queue must stay first-in first-out; and a timer must still fire on time
when 10,000 actors each keep one pending.
"""

from __future__ import annotations

import datetime
import errno
import gc
import inspect
import logging
import multiprocessing
import os
import pickle
import resource
import socket
import subprocess
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ChildActorExited, PoisonMessage, WakeupMessage
from thespian.actors import ActorSystem as ThespianActorSystem
from thespian.system import multiprocCommon, utilis
from thespian.system.transport import (
    ReceiveEnvelope,
    Thespian__Run_Expired,
    TransmitIntent,
    TransmitOnly,
    streamBuffer,
)
from thespian.system.transport import TCPTransport as tcp  # noqa: N813 - thespian's module
from thespian.system.transport import asyncTransportBase as async_transport  # noqa: N813
from thespian.system.transport import wakeupTransportBase as wakeup_transport  # noqa: N813

from persistent_actors import Actor, ActorSystem
from persistent_actors import _protocol as p
from persistent_actors._config import JOURNAL
from persistent_actors._system import _THESPIAN_LOG_DEFS
from persistent_actors._thespian import (
    actor_processes,
    exit_notice,
    fewer_turns,
    frame_auth,
    headroom,
    lean_loop,
    loop_helpers,
    loopback,
    poll_selector,
    transmit_timers,
    wakeup_drain,
)
from persistent_actors._thespian import lazy_identify as patch
from persistent_actors._thespian.frames import unbatch
from persistent_actors._thespian.listen_wake import WOKEN, ListenWake
from persistent_actors._thespian.plugin_host import PluginHost
from persistent_actors._thespian.simple_direct import SimpleDirect
from persistent_actors._thespian.wakeups import fast_wakeup_checks
from persistent_actors.errors import ConfigError
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.testing import Delay, PersistenceTestKit, TestProbe
from tests.conftest import system_config
from tests.failure_actors import Reporter
from tests.plugin_actors import GroupRecordingJournal
from tests.system_actors import Forward, Forwarder, Relay, StackProbe
from tests.test_failures import kit_config


class _Timers(ThespianActor):  # type: ignore[misc]
    """Sets the timers it is told, records the wakeups in the order they came."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[Any] = []
        self.seen: list[Any] = []

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if isinstance(message, WakeupMessage):
            self.fired.append((message.payload, time.monotonic()))
        elif isinstance(message, tuple) and message[0] == "set":
            for delay, payload in message[1]:
                self.wakeupAfter(datetime.timedelta(seconds=delay), payload=payload)
            self.send(sender, "set")
        elif message == "fired":
            self.send(sender, list(self.fired))
        elif isinstance(message, tuple) and message[0] == "seq":
            self.seen.append(message[1])
        elif message == "seen":
            self.send(sender, list(self.seen))


def _raw_simple_system() -> Any:
    fast_wakeup_checks()
    return ThespianActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)


def test_wakeups_fire_in_deadline_order_none_early_none_lost() -> None:
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        # Out of order on purpose, with ties (fire in the order set) and one far in the future.
        plan = [(0.30, "c"), (0.10, "a1"), (0.20, "b"), (0.10, "a2"), (60.0, "never"),
                (0.0, "now")]
        set_at = time.monotonic()
        assert asys.ask(timers, ("set", plan), 5) == "set"
        deadline = time.monotonic() + 5
        fired: list[Any] = []
        while time.monotonic() < deadline and len(fired) < 5:
            asys.listen(0.05)  # the simple base runs actors and due wakeups only inside calls
            fired = asys.ask(timers, "fired", 5)
        assert [payload for payload, _ in fired] == ["now", "a1", "a2", "b", "c"]
        delays = {payload: delay for delay, payload in plan}
        for payload, at in fired:
            assert at - set_at >= delays[payload] - 0.01, f"{payload} fired early"
    finally:
        asys.shutdown()


def test_send_queue_stays_first_in_first_out() -> None:
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        for nr in range(2000):
            asys.tell(timers, ("seq", nr))
        assert asys.ask(timers, "seen", 5) == list(range(2000))
    finally:
        asys.shutdown()


def test_a_recovery_timeout_fires_with_10000_actors_keeping_timers() -> None:
    config = kit_config("simple")
    config["persistence"]["recovery_event_timeout"] = 5.0
    with ActorSystem("many-timers", config=config) as system:
        kit, probe = PersistenceTestKit(system), TestProbe(system)
        quiet = TestProbe(system)
        refs = [system.actor_of(Reporter, f"idle-{i}", quiet.ref) for i in range(10_000)]
        assert len(set(refs)) == 10_000
        for _ in range(10_000):  # every one recovered; each left a recovery-timeout timer
            assert quiet.expect_msg(timeout=30)[0] == "recovered"
        kit.journal.on_recovery(Delay(8.0))
        system.actor_of(Reporter, "slow", probe.ref)
        assert probe.expect_msg(timeout=30) == ("recovery-failed", "RecoveryTimedOutError")
        assert probe.expect_msg(timeout=10) == "stopped"
        # The 10,000 expired timers fired too, and did nothing to the recovered actors.
        refs[0].tell("total")
        assert quiet.expect_msg(timeout=10) == ("total", 0, 0)


class _Fails(ThespianActor):  # type: ignore[misc]
    """Raises on "boom" (counting the attempts); answers "count" with them."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if message == "boom":
            self.attempts += 1
            raise RuntimeError("boom")
        if message == "count":
            self.send(sender, self.attempts)


def test_a_failing_message_is_still_retried_then_returned_as_poison(
        caplog: pytest.LogCaptureFixture) -> None:
    """The patched send loop keeps thespian's failure handling: 3 attempts, then poison."""
    asys = _raw_simple_system()
    try:
        fails = asys.createActor(_Fails)
        with caplog.at_level(logging.WARNING, logger="Thespian"):
            asys.tell(fails, "boom")
        poison = asys.ask(fails, "count", 5)
        assert isinstance(poison, PoisonMessage)
        assert poison.poisonMessage == "boom"
        assert asys.listen(5) == 3  # tried three times, then returned to its sender
        assert sum("Failure of Actor" in r.getMessage() for r in caplog.records) == 3
    finally:
        asys.shutdown()


# -- the simple base's direct external path (persistent_actors._thespian.simple_direct) ---------
def test_a_direct_batch_runs_in_one_pass_in_order_and_its_replies_come_out_together() -> None:
    asys = _raw_simple_system()
    try:
        direct = SimpleDirect.of(asys)
        assert direct is not None  # thespian's internals are as this module was written for
        first, second = asys.createActor(_Timers), asys.createActor(_Timers)
        assert direct.take_replies() == []
        direct.tell_all([(first, ("seq", 1)), (second, ("seq", 10)), (first, ("seq", 2)),
                         (first, "seen"), (second, "seen")])
        # Everything ran inside tell_all; both replies wait, in the order they were sent.
        assert direct.take_replies() == [[1, 2], [10]]
        assert direct.take_replies() == []
        with pytest.raises(TypeError):
            direct.tell_all([(first, ("seq", 3)), ("not an address", ("seq", 4))])
        direct.tell_all([(first, "seen")])
        assert direct.take_replies() == [[1, 2]]  # the refused batch sent nothing
        assert asys.ask(first, "seen", 5) == [1, 2]  # thespian's own calls still work
    finally:
        asys.shutdown()


def test_a_direct_batch_keeps_the_queue_order_through_failures_and_thespian_messages() -> None:
    """Handed straight to the actors, a batch runs as if queued: a failing message is retried
    after the rest, and nothing after a thespian message (here a stop) overtakes it."""
    asys = _raw_simple_system()
    try:
        direct = SimpleDirect.of(asys)
        assert direct is not None
        fails, first = asys.createActor(_Fails), asys.createActor(_Timers)
        direct.tell_all([(fails, "boom"), (first, ("seq", 1)), (fails, "count"),
                         (first, ("seq", 2)), (first, "seen"), (first, ActorExitRequest()),
                         (first, ("seq", 3)), (first, "seen")])
        replies = direct.take_replies()
        # "count" ran before the retries of "boom"; the stop came before the last "seen".
        assert replies[:2] == [1, [1, 2]]
        assert len(replies) == 3
        assert isinstance(replies[2], PoisonMessage)
        assert replies[2].poisonMessage == "boom"
        direct.tell_all([(fails, "count")])
        assert direct.take_replies() == [3]
    finally:
        asys.shutdown()


def test_the_direct_path_is_refused_on_anything_but_the_simple_base() -> None:
    assert SimpleDirect.of(object()) is None
    system = ThespianActorSystem("multiprocTCPBase", transientUnique=True, logDefs=False)
    try:
        assert SimpleDirect.of(system) is None
    finally:
        system.shutdown()


# -- frame authentication (persistent_actors._thespian.frame_auth) ------------------------------
def test_thespian_internals_that_frame_authentication_patches_are_as_written_for() -> None:
    """Fails on a thespian upgrade: re-check frame_auth's patch against the new transport."""
    assert metadata.version("thespian") == "4.0.1", "re-check _thespian/frame_auth.py against it"
    frame_auth._check_thespian()
    # This process never installs a key: thespian's own serializer and ACK frames are in place.
    assert tcp.serializer is pickle
    assert tcp.ackMsg == streamBuffer.toSendBuffer(streamBuffer.ackPacket)
    # The patch swaps module globals: thespian must look them up when it runs, not bind them.
    for function, names in ((tcp.TCPIncoming_Common.__init__, ["serializer.loads"]),
                            (tcp.TCPTransport.serializer, ["serializer.dumps"]),
                            (tcp.TCPTransport._addedDataToIncoming,
                             ["inc.data", "ackMsg", "ackDataErrMsg"]),
                            (tcp.TCPTransport._check_XMIT_4_done,
                             ["intent.ackbuf.completed()", "self._addedDataToIncoming("])):
        source = inspect.getsource(function)
        for name in names:
            assert name in source, f"{function.__qualname__} no longer uses {name}"
    # Thespian forks its processes, so they inherit the patch and the key.
    context = multiprocCommon.get_multiproc_context({})
    assert context is not None
    assert context.get_start_method() == "fork"


def test_the_receive_buffer_holds_the_whole_tagged_frame_before_deserializing() -> None:
    codec = frame_auth.FrameCodec(b"k" * 32)
    wire = streamBuffer.toSendBuffer(("sender", "message"), codec.dumps)
    buffer = streamBuffer.ReceiveBuffer(codec.loads)
    for i in range(0, len(wire), 7):  # as TCP may deliver it, in pieces
        assert frame_auth._completed_frame(buffer) is None
        buffer.addMore(wire[i:i + 7])
    frame = frame_auth._completed_frame(buffer)
    assert frame is not None
    assert codec.authentic(frame)
    assert buffer.completed() == (("sender", "message"), b"")


def test_install_refuses_a_thespian_without_the_internals_it_patches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tcp.TCPTransport, "_check_XMIT_4_done")
    with pytest.raises(ConfigError, match=r"cannot patch this thespian version: it lacks "
                                          r"TCPTransport._check_XMIT_4_done"):
        frame_auth.install(b"k" * 32)
    assert not frame_auth.installed()
    assert tcp.serializer is pickle
    with pytest.raises(ConfigError, match="at least 32 bytes, got 5"):
        frame_auth.install(b"short")


def test_install_is_idempotent_for_one_key_and_refuses_a_second() -> None:
    script = (
        "from persistent_actors._thespian import frame_auth as f\n"
        "from persistent_actors.errors import ConfigError\n"
        "f.install(b'a' * 32); f.install(b'a' * 32)\n"
        "try:\n    f.install(b'b' * 32)\nexcept ConfigError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert "authenticates thespian frames with another secret already" in done.stdout
def test_delivered_messages_are_still_logged_when_thespian_debug_logging_is_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """The patched receive skips thespian's per-message debug line only while it is off."""
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        with caplog.at_level(logging.INFO, "Thespian"):
            asys.tell(timers, ("seq", "quiet"))
        assert "quiet" not in caplog.text
        with caplog.at_level(logging.DEBUG, "Thespian"):
            asys.tell(timers, ("seq", "loud"))
        assert "got message \"('seq', 'loud')\"" in caplog.text
        assert asys.ask(timers, "seen", 5) == ["quiet", "loud"]
    finally:
        asys.shutdown()


def test_transmit_and_receive_descriptions_read_as_before_once_formatted() -> None:
    # lazy_identify: thespian's identify() texts are built only when a log line formats them.
    intent = TransmitIntent("target", ("payload", 1))
    envelope = ReceiveEnvelope("sender", ("payload", 2))
    before = str(envelope)
    patch.lazy_identify()
    patch.lazy_identify()  # idempotent
    assert isinstance(intent.identify(), patch._Description)
    assert str(envelope) == before
    # The intent's text ends in its remaining time, which changes between two calls.
    assert str(intent).startswith("************* TransportIntent(target-pending-ExpiresIn_")
    assert "ReceiveEnvelope(from: sender" in "%s" % envelope.identify()  # noqa: UP031
    assert "('payload', 1)" in "got %s" % intent.identify()  # noqa: UP031


def test_the_transports_poll_selector_reports_ready_sockets_and_closed_descriptors() -> None:
    # poll_selector: thespian's transport waits with poll; a descriptor that is not open
    # raises EBADF as epoll's register does, which thespian's recovery relies on.
    poll_selector.poll_selector()
    poll_selector.poll_selector()  # idempotent
    assert tcp.selectors.DefaultSelector is poll_selector.turn_selector
    left, right = socket.socketpair()
    try:
        selector = tcp.selectors.DefaultSelector()
        selector.register(left.fileno(), tcp.selectors.EVENT_READ)
        selector.register(right.fileno(), tcp.selectors.EVENT_WRITE)
        with pytest.raises(KeyError):  # one registration per descriptor, as in selectors
            selector.register(right.fileno(), tcp.selectors.EVENT_READ)
        assert [(key.fd, events) for key, events in selector.select(0)] == [
            (right.fileno(), tcp.selectors.EVENT_WRITE)]
        right.send(b"x")
        ready = {key.fd: events for key, events in selector.select(1)}
        assert ready[left.fileno()] == tcp.selectors.EVENT_READ
        # A month's timer: poll takes at most 2**31-1 ms; an OverflowError killed the process.
        ready = {key.fd: events for key, events in selector.select(30 * 24 * 3600.0)}
        assert ready[left.fileno()] == tcp.selectors.EVENT_READ
        selector.close()
        _closed_descriptor_raises_ebadf(0)
    finally:
        left.close()
        right.close()


def _closed_descriptor_raises_ebadf(timeout: float) -> None:
    """A wait of `timeout` on a descriptor that is not open raises OSError(EBADF)."""
    closed = socket.socket()
    number = closed.fileno()
    closed.close()
    selector = tcp.selectors.DefaultSelector()
    selector.register(number, tcp.selectors.EVENT_READ)
    with pytest.raises(OSError) as raised:
        selector.select(timeout)
    assert raised.value.errno == errno.EBADF
    selector.close()


def test_a_wait_shorter_than_a_millisecond_reports_what_poll_would() -> None:
    # poll_selector: a sub-millisecond wait (the driver's collection of replies) goes to
    # select, whose timeout has microseconds; it reports the same events as poll, and a
    # descriptor that is not open raises EBADF there too.
    poll_selector.poll_selector()
    left, right = socket.socketpair()
    try:
        selector = tcp.selectors.DefaultSelector()
        selector.register(left.fileno(), tcp.selectors.EVENT_READ | tcp.selectors.EVENT_WRITE)
        selector.register(right.fileno(), tcp.selectors.EVENT_READ)
        assert [(key.fd, events) for key, events in selector.select(0.0001)] == [
            (left.fileno(), tcp.selectors.EVENT_WRITE)]  # writable, nothing to read
        right.send(b"x")
        assert {key.fd: events for key, events in selector.select(0.0001)} == {
            left.fileno(): tcp.selectors.EVENT_READ | tcp.selectors.EVENT_WRITE}
        assert {key.fd: events for key, events in selector.select(0.0001)} == \
            {key.fd: events for key, events in selector.select(1)}  # as poll sees it
        selector.close()
        _closed_descriptor_raises_ebadf(0.0001)
    finally:
        left.close()
        right.close()


def test_the_transports_selector_is_reused_and_each_turn_waits_for_what_it_registered() -> None:
    # One poll set per thread, handed out again each turn: a turn waits only for the
    # descriptors and events it registered, whatever earlier turns registered.
    poll_selector.poll_selector()
    left, right = socket.socketpair()
    try:
        right.send(b"x")  # left readable, both writable
        first = tcp.selectors.DefaultSelector()
        first.register(left.fileno(), tcp.selectors.EVENT_READ)
        first.register(right.fileno(), tcp.selectors.EVENT_WRITE)
        assert {key.fd: ev for key, ev in first.select(0)} == {
            left.fileno(): tcp.selectors.EVENT_READ, right.fileno(): tcp.selectors.EVENT_WRITE}
        first.close()
        second = tcp.selectors.DefaultSelector()
        assert second is first  # the same poll set, this turn's registrations cleared
        second.register(left.fileno(), tcp.selectors.EVENT_WRITE)  # changed events
        assert [(key.fd, ev) for key, ev in second.select(0)] == [
            (left.fileno(), tcp.selectors.EVENT_WRITE)]  # right dropped, left not for reading
        second.close()
        third = tcp.selectors.DefaultSelector()
        assert third.select(0) == []  # nothing registered: nothing ready
        third.close()
        seen: list[object] = []
        other = threading.Thread(target=lambda: seen.append(tcp.selectors.DefaultSelector()))
        other.start()
        other.join()
        assert seen[0] is not first  # each thread its own
    finally:
        left.close()
        right.close()


def _remaining(timer: Any, now: float) -> Any:
    return timer.view(now).remaining()  # thespian's own reading of a deadline


def test_transmit_timers_give_thespians_delays_and_expiry() -> None:
    # transmit_timers: an intent's and an incoming socket's delay, and expiry, read from the
    # deadlines, equal what thespian computes from its timer views.
    transmit_timers.transmit_timers()
    transmit_timers.transmit_timers()  # idempotent
    assert TransmitIntent.expired.__module__ == transmit_timers.__name__
    now = time.perf_counter()
    intent = TransmitIntent("target", "message", maxPeriod=datetime.timedelta(seconds=5))
    assert intent.delay(now) == _remaining(intent._quitTime, now)
    assert not intent.expired()
    assert intent.retry()  # sets a retry deadline, sooner than the quit time
    assert intent.delay(now) == min(_remaining(intent._quitTime, now),
                                    _remaining(intent._retryTime, now))
    intent.backoffPause(startPausing=True)  # sets a pause deadline, sooner still
    assert intent.delay(now) == _remaining(intent._pauseUntil, now)
    assert intent.delay(now + 3600) == datetime.timedelta(0)  # never below zero
    intent.awaitingTXSlot()  # thespian's own path: half the remaining time, at least 10 ms
    assert intent.delay(now) == max(datetime.timedelta(milliseconds=10),
                                    _remaining(intent._quitTime, now) / 2)
    gone = TransmitIntent("target", "message", maxPeriod=datetime.timedelta(seconds=-1))
    assert gone.expired()
    assert gone.delay() == datetime.timedelta(0)

    incoming = tcp.TCPIncomingPersistent(None, None)
    assert incoming.delay(now) == _remaining(incoming._expires, now)
    incoming.backoffPause(startPausing=True)
    assert incoming.delay(now) == min(_remaining(incoming._expires, now),
                                      _remaining(incoming._pauseUntil, now))
    assert incoming.delay(now + 10**6) == datetime.timedelta(0)

    idle = tcp.IdleSocket(None, None)
    assert not idle.expired()
    idle.validity = tcp.ExpirationTimer(datetime.timedelta(seconds=-1))
    assert idle.expired()


def test_loop_helpers_compute_what_thespians_helpers_compute() -> None:
    # loop_helpers: the transport's partition, fmap, exclusive_processing and address hash are
    # faster copies with the same results (thespian.system.utilis keeps its own).
    loop_helpers.loop_helpers()
    loop_helpers.loop_helpers()  # idempotent
    assert tcp.fmap is loop_helpers.fmap
    assert tcp.partition is loop_helpers.partition
    assert async_transport.partition is loop_helpers.partition
    assert tcp.exclusive_processing is loop_helpers.ExclusiveProcessing
    assert async_transport.exclusive_processing is loop_helpers.ExclusiveProcessing
    assert utilis.fmap is not loop_helpers.fmap

    def odd(n: int) -> bool:
        return n % 2 == 1

    class Collected(list[int]):
        pass

    for output in (list, deque, Collected):  # Collected: thespian's own partition
        assert loop_helpers.partition(odd, iter(range(7)), output) == \
            utilis.partition(odd, iter(range(7)), output)
    assert loop_helpers.partition(odd, [3, 1, 2, 5]) == ([3, 1, 5], [2])

    class Mappable:
        def fmap(self, func: Any) -> str:
            return "own"

    shapes: list[Any] = [([1, 2], [3]), [1, (2, [3])], {"a": 1}, 4, (), [], Mappable(),
                         [Mappable(), 5], range(3)]
    for shape in shapes:
        assert loop_helpers.fmap(str, shape) == utilis.fmap(str, shape)

    class Flag:
        def __init__(self) -> None:
            self.held = False

        def _exclusively_processing(self) -> bool:
            if self.held:
                return False
            self.held = True
            return True

        def _not_processing(self) -> None:
            self.held = False

    flag = Flag()
    with loop_helpers.ExclusiveProcessing(flag):
        assert flag.held
    assert not flag.held
    with pytest.raises(RuntimeError), loop_helpers.ExclusiveProcessing(flag):
        raise RuntimeError
    assert flag.held  # as thespian's generator: no release when the block raised

    address = tcp.TCPv4ActorAddress("127.0.0.1", 1234)
    assert hash(address) == hash((address.socketArgs, address.connectArgs))
    assert hash(address) == hash(tcp.TCPv4ActorAddress("127.0.0.1", 1234))


def _bare_transport() -> Any:
    """A TCPTransport with just the state its receive and transmit steps touch."""
    transport = object.__new__(tcp.TCPTransport)
    transport._incomingEnvelopes = []
    transport._openSockets = {}
    transport._transmitIntents = {}
    return transport


def test_fewer_turns_waits_for_the_ack_as_soon_as_the_data_is_sent() -> None:
    # fewer_turns: a transmit whose bytes are all out goes straight to waiting for the ACK,
    # not to thespian's empty "shutdown write" stage (a turn of the loop of its own).
    fewer_turns.fewer_turns()
    fewer_turns.fewer_turns()  # idempotent
    left, right = socket.socketpair()
    try:
        intent = TransmitIntent("target", "message")
        intent.serMsg = tcp.toSendBuffer("payload")
        intent.socket, intent.amtSent, intent.stage = left, 0, tcp.TCPTransport._XMITStepSendData
        assert tcp.TCPTransport._next_XMIT_2(_bare_transport(), intent) is True
        assert intent.stage == tcp.TCPTransport._XMITStepWaitForAck
        assert intent.ackbuf.remainingAmount() == 20  # a fresh ACK buffer, as thespian's step
        assert right.recv(1000) == intent.serMsg
    finally:
        left.close()
        right.close()


def test_fewer_turns_reads_a_message_in_the_turn_that_read_its_length() -> None:
    # fewer_turns: once the first 20 bytes gave the length, the rest is read in the same turn
    # (exactly that many bytes: a following message stays in the socket); a rest that has
    # not arrived waits for the next turn as before.
    fewer_turns.fewer_turns()
    transport = _bare_transport()
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        sender = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 1234))
        first = tcp.toSendBuffer((sender, "x" * 300))
        second = tcp.toSendBuffer((sender, "second"))
        right.sendall(first + second)
        inc = tcp.TCPIncomingPersistent(None, left)
        assert transport._handleReadableIncoming(inc) is None  # done in one turn
        assert [e.message for e in transport._incomingEnvelopes] == ["x" * 300]
        assert right.recv(100) == tcp.ackMsg
        assert left.recv(1000) == second  # not one byte of the next message was taken

        right.sendall(first[:100])
        inc = tcp.TCPIncomingPersistent(None, left)
        assert transport._handleReadableIncoming(inc) is inc  # the rest is not there yet
        right.sendall(first[100:])
        assert transport._handleReadableIncoming(inc) is None
        assert [e.message for e in transport._incomingEnvelopes] == ["x" * 300] * 2
    finally:
        left.close()
        right.close()


def test_fewer_turns_reads_the_whole_ack_in_one_turn() -> None:
    # fewer_turns: thespian's ACK frame is 21 bytes; the byte after the first 20 is read in
    # the same turn and the transmit finishes, instead of waiting for another poll.
    fewer_turns.fewer_turns()
    assert len(tcp.ackMsg) > 20
    transport = _bare_transport()
    transport._finished_intents = []
    left, right = socket.socketpair()
    left.setblocking(False)
    target = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 1234))
    try:
        intent = TransmitIntent(target, "message")
        intent.socket, intent.stage = left, tcp.TCPTransport._XMITStepWaitForAck
        intent.ackbuf = streamBuffer.ReceiveBuffer(tcp.serializer.loads)
        right.sendall(tcp.ackMsg[:20])
        assert tcp.TCPTransport._next_XMIT_4(transport, intent) is True  # the rest not there
        assert intent.stage == tcp.TCPTransport._XMITStepWaitForAck
        right.sendall(tcp.ackMsg[20:])
        assert tcp.TCPTransport._next_XMIT_4(transport, intent) is False  # done
        assert transport._finished_intents == [(intent, tcp.SendStatus.Sent)]

        intent = TransmitIntent(target, "message")
        intent.socket, intent.stage = left, tcp.TCPTransport._XMITStepWaitForAck
        intent.ackbuf = streamBuffer.ReceiveBuffer(tcp.serializer.loads)
        right.sendall(tcp.ackMsg)
        assert tcp.TCPTransport._next_XMIT_4(transport, intent) is False  # one call, one turn
    finally:
        left.close()
        right.close()


def _real_transport() -> Any:
    """A real TCPTransport (its own listen socket on loopback), as an external process has."""
    admin = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 1))
    return tcp.TCPTransport(tcp.ExternalTransportCopy(), admin, False, False)


def test_lean_loop_hands_the_selector_its_sockets_in_one_call() -> None:
    # lean_loop: the turn's sockets go to the poll selector in one call, with the checks
    # register makes; anything register would refuse is left to register.
    poll_selector.poll_selector()
    left, right = socket.socketpair()
    try:
        right.send(b"x")
        selector = tcp.selectors.DefaultSelector()
        assert selector.want([left.fileno()], [right.fileno()]) is True
        assert {key.fd: ev for key, ev in selector.select(0)} == {
            left.fileno(): tcp.selectors.EVENT_READ, right.fileno(): tcp.selectors.EVENT_WRITE}
        for reads, writes in (([left.fileno()], [left.fileno()]), ([-1], []), ([left], [])):
            selector = tcp.selectors.DefaultSelector()
            assert selector.want(reads, writes) is False  # duplicate, negative, not an int
            assert selector.select(0) == []  # nothing registered
        selector = tcp.selectors.DefaultSelector()
        selector.register(left.fileno(), tcp.selectors.EVENT_READ)
        assert selector.want([right.fileno()], []) is False  # not on top of a register
        selector.close()
    finally:
        left.close()
        right.close()


def test_lean_loop_walks_idle_sockets_without_lookups_and_still_serves_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # lean_loop: a turn where no idle socket is ready, expired or replaced makes no lookup
    # of its own entry (thespian made one per idle socket per turn); a ready one is read and
    # acknowledged, an expired one closed, a replaced one closed, as thespian does.
    poll_selector.poll_selector()
    lean_loop.lean_loop()
    lean_loop.lean_loop()  # idempotent
    assert tcp.TCPTransport._runWithExpiry is lean_loop._runWithExpiry
    lookups: list[Any] = []
    ops_key = tcp.opsKey

    def counted_ops_key(addr: Any) -> Any:
        lookups.append(addr)
        return ops_key(addr)

    monkeypatch.setattr(tcp, "opsKey", counted_ops_key)
    transport = _real_transport()
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        for left, _ in pairs:
            left.setblocking(False)
        addrs = [tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2000 + i))
                 for i in range(3)]
        idles = [tcp.IdleSocket(pairs[i][0], addrs[i]) for i in range(3)]
        for addr, idle in zip(addrs, idles, strict=True):
            transport._openSockets[ops_key(addr)] = idle

        assert transport.run(None, datetime.timedelta(seconds=0.02)) is None  # nothing came
        assert lookups == []
        assert list(transport._openSockets.values()) == idles

        pairs[1][1].sendall(tcp.toSendBuffer((addrs[1], "hello")))
        envelope = transport.run(None, datetime.timedelta(seconds=5))
        assert envelope.message == "hello"
        assert pairs[1][1].recv(100) == tcp.ackMsg
        again = transport._openSockets[ops_key(addrs[1])]
        assert again is not idles[1]  # thespian's new IdleSocket for the same socket
        assert again.socket is pairs[1][0]

        idles[0].validity._time_to_quit = 0.0  # long expired
        transport.run(None, datetime.timedelta(seconds=0.02))
        assert ops_key(addrs[0]) not in transport._openSockets
        assert pairs[0][0].fileno() == -1  # closed

        # A message from addrs[2] on another socket replaces idle socket 2, which is closed.
        transport._incomingSockets[pairs[3][0].fileno()] = tcp.TCPIncomingPersistent(
            tcp.ActorAddress(None), pairs[3][0])
        pairs[3][1].sendall(tcp.toSendBuffer((addrs[2], "from two")))
        envelope = transport.run(None, datetime.timedelta(seconds=5))
        assert envelope.message == "from two"
        assert transport._openSockets[ops_key(addrs[2])].socket is pairs[3][0]
        assert pairs[2][0].fileno() == -1
    finally:
        transport.close()
        for left, right in pairs:
            left.close()
            right.close()


def test_lean_loop_leaves_transmits_alone_when_none_is_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # lean_loop: the timeout pass steps no transmit when none is due (thespian checked each
    # one, every turn); one that is due (its target's socket came free) is stepped as before.
    lean_loop.lean_loop()
    transport = _real_transport()
    checks: list[Any] = []
    step_check = transport._nextTransmitStepCheck

    def counted_check(*args: Any, **kw: Any) -> Any:
        checks.append(args)
        return step_check(*args, **kw)

    monkeypatch.setattr(transport, "_nextTransmitStepCheck", counted_check)
    left, right = socket.socketpair()
    spare, other = socket.socketpair()
    try:
        left.setblocking(False)
        target = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2100))
        sending = TransmitIntent(target, "first")
        sending.socket, sending.stage = left, tcp.TCPTransport._XMITStepWaitForAck
        sending.ackbuf = streamBuffer.ReceiveBuffer(tcp.serializer.loads)
        queued = TransmitIntent(target, "second")
        queued.stage, queued.serMsg = tcp.TCPTransport._XMITStepSendConnect, b"second-bytes"
        queued.awaitingTXSlot()
        transport._transmitIntents = {left.fileno(): sending}
        transport._waitingTransmits = [queued]

        transport._processIntentTimeouts()
        assert checks == []
        assert transport._transmitIntents == {left.fileno(): sending}
        assert transport._waitingTransmits == [queued]

        transport._openSockets[tcp.opsKey(target)] = tcp.IdleSocket(spare, target)
        transport._processIntentTimeouts()  # the queued one may take the free socket now
        assert len(checks) == 2  # thespian's own pass
        assert transport._transmitIntents == {left.fileno(): sending, spare.fileno(): queued}
        assert transport._waitingTransmits == []
        assert other.recv(100) == b"second-bytes"
    finally:
        transport.close()
        for sock in (left, right, spare, other):
            sock.close()


class _RecordedWaits:
    """A turn selector (`poll_selector`) that records each turn's wait; an endless one is cut."""

    def __init__(self, inner: Any, waits: list[Any]) -> None:
        self._inner = inner
        self._waits = waits

    def want(self, reads: list[Any], writes: list[Any]) -> bool:
        return bool(self._inner.want(reads, writes))

    def register(self, fileobj: Any, events: int, data: Any = None) -> None:
        self._inner.register(fileobj, events, data)

    def select(self, timeout: float | None = None) -> Any:
        self._waits.append(timeout)
        return self._inner.select(0.5 if timeout is None else timeout)  # no test hangs

    def close(self) -> None:
        self._inner.close()


def test_lean_loop_waits_no_longer_than_a_wakeup_due_in_under_half_a_microsecond(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # lean_loop: a turn whose clock read less than half a microsecond before the first wakeup
    # got ``timedelta(0)`` for the time left, which thespian drops as false: with no other
    # deadline, the turn waited for ever (until a message came), past that wakeup and every
    # later one. A host whose cells' timers ride on one wakeup stopped them all for good.
    poll_selector.poll_selector()
    lean_loop.lean_loop()
    turn_selector = tcp.selectors.DefaultSelector
    waits: list[Any] = []
    monkeypatch.setattr(tcp, "selectors", types.SimpleNamespace(
        DefaultSelector=lambda: _RecordedWaits(turn_selector(), waits),
        EVENT_READ=tcp.selectors.EVENT_READ, EVENT_WRITE=tcp.selectors.EVENT_WRITE))
    transport = _real_transport()
    try:
        transport.run_time = tcp.ExpirationTimer(None)
        transport.addWakeup(datetime.timedelta(seconds=0), "due")
        due = transport._pendingWakeups[0][0]._time_to_quit
        monkeypatch.setattr(tcp, "currentTime", lambda: due - 3e-7)  # the turn's clock
        got: list[Any] = []

        def handler(envelope: Any) -> bool:
            got.append(envelope.message)
            return False  # the run ends with the first message

        transport.run(handler, datetime.timedelta(seconds=5))
        assert [(type(m), m.payload) for m in got] == [(WakeupMessage, "due")]
        assert waits[0] is not None  # bounded by the wakeup (thespian: None, for ever)
        assert waits[0] <= 1e-6
    finally:
        transport.close()


# -- frame-stack headroom (persistent_actors/_thespian/headroom.py) -----------------------------
def _leaf(n: int) -> int:
    return _leaf(n - 1) if n else 0


def _calls() -> None:
    for _ in range(_HEADROOM_CALLS):
        _leaf(3)


def _at_depth(depth: int, fn: Any, *args: Any) -> Any:
    return _at_depth(depth - 1, fn, *args) if depth else fn(*args)


def _page_faults(fn: Any, *args: Any) -> int:
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    fn(*args)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


_HEADROOM_CALLS = 2_000


def test_headroom_keeps_a_loop_off_a_frame_chunk_boundary() -> None:
    # At some depth the four frames of each `_leaf(3)` straddle the end of a 16 KiB frame
    # chunk: every call maps a fresh chunk (a page fault each, counted, not timed) and unmaps
    # it on return. Called with headroom from that same depth, the calls fit one chunk.
    faults = {depth: _page_faults(_at_depth, depth, _calls) for depth in range(400)}
    thrashing = [depth for depth, count in faults.items() if count >= _HEADROOM_CALLS]
    assert thrashing, f"no depth below 400 straddles a chunk boundary: {faults}"
    for depth in thrashing[:3]:
        roomy = _page_faults(_at_depth, depth, headroom.call_with_headroom, _calls)
        assert roomy < _HEADROOM_CALLS // 10, (depth, roomy)
    assert headroom.call_with_headroom(int, "17", base=8) == 15  # arguments pass through


@pytest.mark.parametrize("base", ["simple", "multiproc-tcp"])
def test_actors_and_the_driver_run_with_headroom(base: str) -> None:
    # simple: the actor runs on the driver thread; multiproc-tcp: in a process thespian forked.
    with ActorSystem("roomy", config={"actor_system": {"base": base}}) as system:
        probe = system.actor_of(StackProbe)
        assert probe.ask("roomy?", timeout=10) is True


# -- actor_processes: gc.freeze in the processes thespian forks for actors ----------------------
class _FreezeCount(Actor):
    """Replies with the number of objects frozen in its process."""

    def on_receive(self, message: Any) -> None:
        self.sender.tell(gc.get_freeze_count())


def _send_freeze_count(conn: Any) -> None:
    conn.send(gc.get_freeze_count())
    conn.close()


@pytest.mark.multiproc
def test_an_actor_process_freezes_what_it_inherited_and_the_application_does_not() -> None:
    # actor_processes: thespian's collector in each forked actor walked the whole inherited heap.
    system = ActorSystem("frozen", config=system_config("multiproc-tcp"))
    try:
        assert system.actor_of(_FreezeCount).ask("count", timeout=30) > 1000
    finally:
        system.shutdown()
    assert gc.get_freeze_count() == 0


def test_actor_processes_leave_other_forks_and_thespians_start_child_alone() -> None:
    # The hook runs before the target: thespian's startChild stays its own function, so the
    # actor's frames are not one deeper (a wrapper frame cost entity hosts 2x CPU, see the
    # module's docstring). A process forked for another target is not frozen.
    actor_processes.prepare_actor_processes()
    assert multiprocCommon.startChild.__module__ == "thespian.system.multiprocCommon"
    context = multiprocessing.get_context("fork")
    here, there = context.Pipe(duplex=False)
    child = context.Process(target=_send_freeze_count, args=(there,))
    child.start()
    try:
        assert here.poll(30)
        assert here.recv() == 0
    finally:
        child.join(30)
        here.close()
        there.close()


def test_after_reads_hands_a_message_over_behind_the_frames_waiting_and_at_once_without() -> None:
    # lean_loop.after_reads: the message comes after the frames the next turn reads (a send
    # to itself would come before them), and that turn polls without waiting: with nothing
    # waiting, a 30 s run still hands it over (a waiting poll would expire the run first).
    poll_selector.poll_selector()
    fewer_turns.fewer_turns()
    lean_loop.lean_loop()
    transport = _real_transport()
    host = _HostRef(transport)
    left, right = socket.socketpair()
    try:
        left.setblocking(False)
        peer = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2200))
        transport._openSockets[tcp.opsKey(peer)] = tcp.IdleSocket(left, peer)
        found = lean_loop.after_reads(_Hosted(host))
        assert found is not None
        deliver: Callable[[Any], None] = found
        seen: list[Any] = []

        def handler(envelope: Any) -> bool:
            seen.append(envelope.message)
            if envelope.message == "first":
                right.sendall(tcp.toSendBuffer((peer, "arrived meanwhile")))
                deliver("after the reads")
            return bool(envelope.message != "after the reads")

        transport._incomingEnvelopes.append(ReceiveEnvelope(peer, "first"))
        result = transport.run(handler, datetime.timedelta(seconds=30))
        assert seen == ["first", "arrived meanwhile", "after the reads"]
        assert not isinstance(result, tcp.Thespian__Run_Expired)

        seen.clear()
        transport._incomingEnvelopes.append(ReceiveEnvelope(peer, "first"))
        # Nothing more comes: the message must still be handed over, without waiting.

        def alone(envelope: Any) -> bool:
            seen.append(envelope.message)
            if envelope.message == "first":
                deliver("after the reads")
            return bool(envelope.message != "after the reads")

        result = transport.run(alone, datetime.timedelta(seconds=30))
        assert seen == ["first", "after the reads"]
        assert not isinstance(result, tcp.Thespian__Run_Expired)
        assert lean_loop.after_reads(object()) is None  # no transport: send as usual
    finally:
        transport.close()
        left.close()
        right.close()


def test_when_readable_hands_a_message_over_in_the_turn_a_descriptor_is_readable() -> None:
    # lean_loop.when_readable: a thread of the actor's own (a background commit) wakes the
    # actor's loop by making a pipe readable; the loop hands the actor its message in that
    # turn, as long as the watch stands. A 30 s run that waited for nothing else returns.
    poll_selector.poll_selector()
    fewer_turns.fewer_turns()
    lean_loop.lean_loop()
    transport = _real_transport()
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        forget = lean_loop.when_readable(_Hosted(_HostRef(transport)), read, "committed")
        assert forget is not None
        seen: list[Any] = []

        def handler(envelope: Any) -> bool:
            seen.append(envelope.message)
            os.read(read, 16)  # the actor drains what woke it
            return False

        threading.Timer(0.05, os.write, (write, b"x")).start()
        result = transport.run(handler, datetime.timedelta(seconds=30))
        assert seen == ["committed"]
        assert not isinstance(result, tcp.Thespian__Run_Expired)
        forget()
        os.write(write, b"x")  # readable, but no longer watched: nothing is handed over
        transport.run(handler, datetime.timedelta(seconds=0.1))
        assert seen == ["committed"]
        assert lean_loop.when_readable(object(), read, "x") is None  # no transport
    finally:
        transport.close()
        os.close(read)
        os.close(write)


def test_a_wake_cuts_the_external_listen_short_only_while_armed() -> None:
    # listen_wake: a request queued while the driver listens ends that listen (it returns
    # WOKEN) instead of waiting for the listen's slice; unarmed, a wake writes nothing.
    poll_selector.poll_selector()
    fewer_turns.fewer_turns()
    lean_loop.lean_loop()
    transport = _real_transport()
    asys = types.SimpleNamespace(_systemBase=types.SimpleNamespace(transport=transport))
    wake = ListenWake.of(asys)
    assert wake is not None
    try:
        wake.arm()
        threading.Timer(0.05, wake.wake).start()
        result = transport.run(None, datetime.timedelta(seconds=30))
        assert getattr(result, "message", None) is WOKEN
        wake.disarm()  # takes back the byte: the next listen waits its whole slice
        assert transport.run(None, datetime.timedelta(seconds=0.1)) is None  # expired
        wake.wake()  # not armed: nothing written
        assert transport.run(None, datetime.timedelta(seconds=0.1)) is None
        assert ListenWake.of(types.SimpleNamespace()) is None  # not a transport of ours
    finally:
        wake.close()
        transport.close()


class _HostRef:
    """What a thespian actor needs of its ActorManager: the transport, its address, sends.

    A send to the actor itself goes to the transport, as thespian's does (queued at once);
    any other is recorded.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.address = transport.myAddress
        self.sent: list[tuple[Any, Any]] = []

    def actor_send(self, target: Any, message: Any) -> None:
        if target == self.address:
            self.transport.scheduleTransmit(None, TransmitIntent(target, message))
        else:
            self.sent.append((target, message))


class _Hosted:
    def __init__(self, ref: _HostRef) -> None:
        self._myRef = ref


def _write(pid: str) -> p.WriteMessages:
    event = PersistentRepr(pid, 1, "m", b"x")
    return p.WriteMessages((AtomicWrite((event,)),), 7)


def _plugin_host_on(transport: Any) -> tuple[PluginHost, _HostRef]:
    host = PluginHost()
    ref = _HostRef(transport)
    host._myRef = ref
    guardian = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2300))
    host.receiveMessage(p.StartPlugin(JOURNAL, "default",
                                      "tests.plugin_actors:GroupRecordingJournal", {}), guardian)
    assert [type(m) for _, m in ref.sent] == [p.PluginStarted]
    ref.sent.clear()
    return host, ref


def test_the_plugin_host_on_tcp_writes_what_waits_in_its_sockets_in_one_call() -> None:
    # The plugin host's Flush comes after the frames its transport reads next
    # (`lean_loop.after_reads`): host B's frame of writes, arrived while host A's was handled,
    # joins A's transaction. With a Flush sent to itself (before), A's writes went alone.
    # A replay in the next frame still sees both.
    poll_selector.poll_selector()
    fewer_turns.fewer_turns()
    lean_loop.lean_loop()
    GroupRecordingJournal.ids_per_call.clear()
    transport = _real_transport()
    host, ref = _plugin_host_on(transport)
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        hosts = [tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2400 + i)) for i in range(2)]
        for (left, _), address in zip(pairs, hosts, strict=True):
            left.setblocking(False)
            transport._openSockets[tcp.opsKey(address)] = tcp.IdleSocket(left, address)
        frames = [p.Batch((_write("a1"), _write("a2"))), p.Batch((_write("b1"),))]
        replay = p.ReplayMessages("b1", 1, 10, 10, 9)
        replay_sent: list[bool] = []

        def handler(envelope: Any) -> bool:
            if envelope.message == frames[0]:  # B's frame arrives while A's is handled
                pairs[1][1].sendall(tcp.toSendBuffer((hosts[1], frames[1])))
            host.receiveMessage(envelope.message, envelope.sender)
            if GroupRecordingJournal.ids_per_call and not replay_sent:
                pairs[0][1].sendall(tcp.toSendBuffer((hosts[0], replay)))
                replay_sent.append(True)
            return not any(type(m) is p.RecoverySuccess for _, m in ref.sent)

        pairs[0][1].sendall(tcp.toSendBuffer((hosts[0], frames[0])))
        transport.run(handler, datetime.timedelta(seconds=30))
        assert GroupRecordingJournal.ids_per_call == [3]  # a1, a2 and b1 in one call
        sent = [(a, m) for a, frame in ref.sent for m in unbatch(frame)]
        results = [(a, m) for a, m in sent if type(m) is p.WriteMessagesResult]
        assert [a for a, _ in results] == [hosts[0], hosts[0], hosts[1]]
        assert all(m.outcomes == (p.STORED,) for _, m in results)
        replayed = [m for _, m in sent if type(m) is p.ReplayedMessages]
        assert [list(m.rows.sequence_nrs) for m in replayed] == [[1]]
    finally:
        host.receiveMessage(ActorExitRequest(), None)
        transport.close()
        for left, right in pairs:
            left.close()
            right.close()


def test_the_plugin_host_writes_what_it_gathered_before_it_exits() -> None:
    # An exit request may come before the Flush handed over after the transport's reads:
    # the writes requested before it are written and answered, not dropped.
    lean_loop.lean_loop()
    GroupRecordingJournal.ids_per_call.clear()
    transport = _real_transport()
    host, ref = _plugin_host_on(transport)
    try:
        requester = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2500))
        host.receiveMessage(_write("c1"), requester)
        assert GroupRecordingJournal.ids_per_call == []  # gathered, its Flush not come yet
        host.receiveMessage(ActorExitRequest(), None)
        assert GroupRecordingJournal.ids_per_call == [1]
        assert [(a, type(m)) for a, m in ref.sent] == [(requester, p.WriteMessagesResult)]
    finally:
        transport.close()


def test_a_free_admin_port_lies_below_the_ephemeral_range_and_is_bindable() -> None:
    # A port from bind(0) could become an outgoing connection's local port before the admin
    # binds it ("not a valid or useable ActorSystem Admin"); one below the range cannot.
    low, _ = loopback._ephemeral_range()
    port = loopback.free_port()
    assert port < low
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_a_free_admin_port_is_none_this_process_used_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The old processes of a system that used a port may still be exiting: a new admin there
    # would receive what they send to their own. 63 of the 64 candidates avoided: never one of
    # those (the last one, or a kernel-picked port if something else holds it).
    low, _ = loopback._ephemeral_range()
    monkeypatch.setattr(loopback, "_LOWEST_PORT", low - 64)
    used = set(range(low - 64, low - 1))
    assert not {loopback.free_port(avoid=used) for _ in range(20)} & used


# -- exit notices (persistent_actors._thespian.exit_notice) --------------------------------------
class _LastWords(ThespianActor):  # type: ignore[misc]
    """On its exit request, with a wakeup of its own due, tells its watcher "one" and "two"."""

    def __init__(self) -> None:
        super().__init__()
        self.watcher: Any = None

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if message == "watch":
            self.watcher = sender
            self.send(sender, "watching")
        elif isinstance(message, ActorExitRequest) and self.watcher is not None:
            self.wakeupAfter(datetime.timedelta(0))
            time.sleep(0.02)  # the wakeup is due when thespian drains what the process sends
            self.send(self.watcher, "one")
            self.send(self.watcher, "two")  # waits for the acknowledgement of "one"


def test_an_exiting_actor_sends_what_it_queued_though_a_wakeup_of_it_is_due() -> None:
    # Thespian's drain at exit stopped at the first due wakeup the transport handed back (a
    # false ReceiveEnvelope), before the transport had sent anything: "two" (and the parent's
    # ChildActorExited, queued the same way) never left, and a parent waited for ever.
    exit_notice.exit_notices()
    system = ThespianActorSystem("multiprocTCPBase", {"Admin Port": loopback.free_port()},
                                 transientUnique=True, logDefs=_THESPIAN_LOG_DEFS)
    try:
        actor = system.createActor(_LastWords)
        assert system.ask(actor, "watch", datetime.timedelta(seconds=10)) == "watching"
        system.tell(actor, ActorExitRequest())
        got: list[Any] = []
        while "two" not in got and \
                (message := system.listen(datetime.timedelta(seconds=3))) is not None:
            got.append(message)
        assert got == ["one", "two"]
    finally:
        system.shutdown()


def test_a_child_that_died_unreported_is_reported_when_another_childs_exit_is_handled() -> None:
    # A SIGCHLD makes thespian look for dead children and report each; handling any child's
    # exit first dropped every dead child from that list, unreported: a child that died
    # without its own notice was never reported, and its parent never exited.
    exit_notice.exit_notices()
    context = multiprocessing.get_context("fork")
    go = context.Event()
    processes = [*(context.Process(target=go.wait, args=(60,)) for _ in range(2)),
                 context.Process(target=time.sleep, args=(60,))]
    for process in processes:
        process.start()  # (a start reaps the children that exited before it)
    try:
        go.set()
        for process in processes[:2]:  # dead, not reaped: as when the SIGCHLD check is pending
            assert process.pid is not None
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        addresses = [tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2600 + i))
                     for i in range(3)]
        me = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2599))
        scheduled: list[Any] = []
        parent = types.SimpleNamespace(
            _child_procs=[multiprocCommon.ChildInfo(a, "C", proc, i)
                          for i, (a, proc) in enumerate(zip(addresses, processes, strict=True))],
            _checkChildLiveness=multiprocCommon.MultiProcReplicator._checkChildLiveness,
            transport=types.SimpleNamespace(
                myAddress=me, scheduleTransmit=lambda _, intent: scheduled.append(intent)))
        # The exit of child 0 is handled (its own notice came); child 1 died unreported.
        multiprocCommon.MultiProcReplicator._childExited(parent, addresses[0])
        assert [info.childProc for info in parent._child_procs] == [processes[2]]
        assert [(i.targetAddr, type(i.message), i.message.childAddress) for i in scheduled] == \
            [(me, ChildActorExited, addresses[1])]
    finally:
        processes[2].kill()
        for process in processes:
            process.join(5)


# -- wakeups during a send-queue drain (persistent_actors._thespian.wakeup_drain) ----------------
class _QueueTransport(async_transport.asyncTransportBase,  # type: ignore[misc]
                      wakeup_transport.wakeupTransportBase):  # type: ignore[misc]
    """Thespian's queue and wakeups over a fake wire: each transmit-only turn sends one queued
    transmit (as a TCP turn that completes one), unless the run's deadline is over."""

    def __init__(self, queued: int) -> None:
        super().__init__()
        self.myAddress = "me"
        self.run_time = tcp.ExpirationTimer(None)  # as the first run sets it
        target = tcp.ActorAddress(tcp.TCPv4ActorAddress("127.0.0.1", 2600))
        self._aTB_queuedPendingTransmits.extend(
            TransmitIntent(target, nr) for nr in range(queued))

    def _runWithExpiry(self, incomingHandler: Any) -> Any:  # noqa: N802,N803 - thespian's
        if self.run_time.view().expired() or incomingHandler is not TransmitOnly:
            return Thespian__Run_Expired()
        with self._aTB_lock:
            self._aTB_queuedPendingTransmits.popleft()
            return len(self._aTB_queuedPendingTransmits)


def test_a_wakeup_due_while_the_send_queue_drains_is_delivered_after_it() -> None:
    # A send that finds 950 queued drains the queue "transmit only" (to 780); the transport
    # handed a wakeup that came due meanwhile back to that loop, which dropped it: the timer
    # never fired (a periodic one stopped for ever).
    wakeup_drain.due_wakeups_kept()
    transport = _QueueTransport(1000)
    transport.addWakeup(datetime.timedelta(0), "due")
    transport.addWakeup(datetime.timedelta(seconds=60), "later")
    transport._drain_tx_queue_if_needed(datetime.timedelta(seconds=30))
    assert len(transport._aTB_queuedPendingTransmits) == \
        async_transport.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD
    delivered: list[Any] = []

    def handler(envelope: Any) -> bool:
        delivered.append(envelope.message.payload)
        return True

    transport.run(handler, datetime.timedelta(0))
    assert delivered == ["due"]
    assert [payload for _, payload in transport._pendingWakeups] == ["later"]


def test_wakeups_realized_before_or_set_during_a_drain_are_delivered_after_it() -> None:
    # The drain runs inside the handler of a wakeup, another one realized with it waiting; a
    # transmit's callback sets a third during the drain: all three are handled once.
    wakeup_drain.due_wakeups_kept()
    transport = _QueueTransport(1000)
    run_with_expiry = transport._runWithExpiry
    set_during: list[str] = ["during"]

    def set_one_during_the_drain(handler: Any) -> Any:
        if handler is TransmitOnly and len(transport._aTB_queuedPendingTransmits) <= 900 and \
                set_during:
            transport.addWakeup(datetime.timedelta(0), set_during.pop())
        return run_with_expiry(handler)

    transport._runWithExpiry = set_one_during_the_drain  # type: ignore[method-assign,assignment]
    transport.addWakeup(datetime.timedelta(0), "a")
    transport.addWakeup(datetime.timedelta(0), "b")
    delivered: list[Any] = []

    def handler(envelope: Any) -> bool:
        delivered.append(envelope.message.payload)
        if len(delivered) == 1:
            transport._drain_tx_queue_if_needed(datetime.timedelta(seconds=30))
        return True

    transport.run(handler, datetime.timedelta(0))
    assert sorted(delivered) == ["a", "b", "during"]
    assert len(transport._aTB_queuedPendingTransmits) == \
        async_transport.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD


class _Stalled(ThespianActor):  # type: ignore[misc]
    """("stall", dir): blocks its handler (acknowledging nothing) until dir/release exists."""

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if isinstance(message, tuple) and message[0] == "stall":
            folder = Path(message[1])
            (folder / "stalled").touch()
            deadline = time.monotonic() + 60
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)


class _Flooder(ThespianActor):  # type: ignore[misc]
    """("flood", target, n, dir): a wakeup due at once, then n messages to `target`."""

    def __init__(self) -> None:
        super().__init__()
        self.woken = False

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if isinstance(message, WakeupMessage):
            self.woken = True
        elif isinstance(message, tuple) and message[0] == "flood":
            _, target, count, folder = message
            self.wakeupAfter(datetime.timedelta(0))
            (Path(folder) / "flooding").touch()
            for nr in range(count):
                self.send(target, nr)  # the 970th waits in the drain until `target` is released
            self.send(sender, "flooded")
        elif message == "woken":
            self.send(sender, self.woken)


def test_an_actor_whose_send_queue_overflows_still_gets_its_wakeup(tmp_path: Path) -> None:
    wakeup_drain.due_wakeups_kept()
    system = ThespianActorSystem("multiprocTCPBase", {"Admin Port": loopback.free_port()},
                                 transientUnique=True, logDefs=_THESPIAN_LOG_DEFS)
    wait = datetime.timedelta(seconds=30)
    try:
        stalled = system.createActor(_Stalled)
        flooder = system.createActor(_Flooder)
        system.tell(stalled, ("stall", str(tmp_path)))
        deadline = time.monotonic() + 30
        while not (tmp_path / "stalled").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        system.tell(flooder, ("flood", stalled, 1000, str(tmp_path)))
        while not (tmp_path / "flooding").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)  # 1,000 sends queue in a fraction of that: the flooder drains
        (tmp_path / "release").touch()
        assert system.listen(wait) == "flooded"
        woken = False
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            woken = system.ask(flooder, "woken", wait)
        assert woken
    finally:
        system.shutdown()


def test_two_simple_systems_of_one_process_give_their_actors_different_addresses() -> None:
    # Both numbered their actors from 0: a's "x" and b's "x" had one address, their refs
    # compared equal, and a's ref told inside b reached b's "x" (simple_direct.distinct_addresses).
    config = {"actor_system": {"base": "simple"}}
    with ActorSystem("patch-a", config=config) as a, ActorSystem("patch-b", config=config) as b:
        probe_a, probe_b = TestProbe(a), TestProbe(b)
        in_a = a.actor_of(Relay, "in-a", probe_a.ref, name="x")
        in_b = b.actor_of(Relay, "in-b", probe_b.ref, name="x")
        assert in_a != in_b
        assert in_a.address != in_b.address
        forwarder = b.actor_of(Forwarder)
        forwarder.tell(Forward(in_a, "for a"))  # no actor of b has a's address
        forwarder.tell(Forward(in_b, "for b"))  # after it, from the same sender
        assert probe_b.expect_msg(timeout=10) == ("in-b", "for b")
