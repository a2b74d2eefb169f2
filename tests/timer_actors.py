"""Actors for the timer tests (module level: the multiproc base imports them)."""

from __future__ import annotations

import time
from typing import Any

from persistent_actors import Actor, ActorRef, PersistentActor


class TimerUser(Actor):
    """Drives `self.timers` by command; tells `probe` ("got", message, from_itself) for the rest.

    Commands: ("single", key, message, delay), ("periodic", key, message, interval),
    ("cancel", key), "cancel_all", ("active", key) (answered), ("fire_then_cancel", key)
    (a timer of delay 0 that fires while the handler still runs, then cancelled there),
    "fail" (raises: a restart), ("mark", x) (reported like a timer's message).
    """

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case ("single", key, payload, delay):
                self.timers.start_single_timer(key, payload, delay)
            case ("periodic", key, payload, interval):
                self.timers.start_periodic_timer(key, payload, interval)
            case ("cancel", key):
                self.timers.cancel(key)
            case "cancel_all":
                self.timers.cancel_all()
            case ("active", key):
                self.sender.tell(self.timers.is_timer_active(key))
            case ("fire_then_cancel", key):
                self.timers.start_single_timer(key, "too late", 0)
                time.sleep(0.05)  # it is due, and queued as soon as this handler returns
                self.timers.cancel(key)
            case "fail":
                raise RuntimeError("restart, please")
            case _:
                self.probe.tell(("got", message, self.sender == self.self_ref))


class TimerEntity(TimerUser):
    """`TimerUser` as an entity (its id first); "passivate" passivates it."""

    def __init__(self, entity_id: str, probe: ActorRef) -> None:
        super().__init__(probe)
        self.entity_id_seen = entity_id

    def on_receive(self, message: Any) -> None:
        if message == "passivate":
            self.context.passivate()
        elif message == "fire_then_passivate":  # a firing queued while it passivates
            self.timers.start_single_timer("soon", "too late", 0)
            time.sleep(0.05)
            self.context.passivate()
        else:
            super().on_receive(message)


class ReportedTimerEntity(TimerEntity):
    """A `TimerEntity` that tells `probe` ("started", its id) when an incarnation starts, and
    ("stopped", its id) when it stops."""

    def __init__(self, entity_id: str, probe: ActorRef) -> None:
        super().__init__(entity_id, probe)
        probe.tell(("started", entity_id))

    def post_stop(self) -> None:
        self.probe.tell(("stopped", self.entity_id_seen))


class PersistentTimer(PersistentActor):
    """Persists each message of its timer "tick" (started by "start") and tells `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self._pid = pid
        self.probe = probe
        self.ticks = 0

    @property
    def persistence_id(self) -> str:
        return self._pid

    def on_command(self, message: Any) -> None:
        match message:
            case "start":
                self.timers.start_periodic_timer("tick", "tick", 0.02)
            case "tick":
                self.persist(self.ticks + 1, self._ticked)

    def _ticked(self, event: int) -> None:
        self.ticks = event
        if event == 3:
            self.timers.cancel("tick")
            self.probe.tell(("persisted", self.ticks, self.timers.is_timer_active("tick")))

    def on_recover(self, message: Any) -> None:
        if isinstance(message, int):
            self.ticks = message
