"""Journal plugin API: the stored form of events and the coroutines every journal implements.

A journal never sees thespian messages: the runtime's plugin actor turns its protocol into calls on
this interface. Payloads arrive already serialized (msgpack bytes plus a manifest), so every plugin
stores the same bytes and none of them ever pickles.
"""

from __future__ import annotations

import contextvars
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from persistent_actors._errors import PluginError

__all__ = ["MAX_SEQUENCE_NR", "AtomicWrite", "Journal", "PersistentRepr", "may_block"]

# Set by the runtime's plugin host on the coroutines it runs (see `may_block`).
MAY_BLOCK: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "persistent_actors_may_block", default=False)


def may_block() -> bool:
    """Plugin API: True if the running coroutine may block its event loop for a short while.

    The runtime runs each plugin on an event loop of its own and waits for every operation, so
    nothing else needs that loop meanwhile: a plugin whose I/O blocks anyway (SQLite) may do
    it inline there, instead of paying two thread switches per call for a hop to a worker
    thread. False everywhere else, e.g. for a plugin used directly from application asyncio
    code, where blocking would stall the application.
    """
    return MAY_BLOCK.get()

# Largest sequence number; also what "no upper bound" means (fits SQLite's signed 64-bit INTEGER).
MAX_SEQUENCE_NR: Final = 2**63 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class PersistentRepr:
    """One stored event: its identity, its serialized payload and the tags a write adapter gave it.

    `timestamp` is seconds since the epoch (UTC) when the event was persisted.
    """

    persistence_id: str
    sequence_nr: int
    manifest: str
    payload: bytes
    writer_uuid: str = ""
    timestamp: float = 0.0
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class AtomicWrite:
    """Events that are stored all together or not at all (one `persist` or `persist_all` call).

    All events share one persistence id and have consecutive sequence numbers.
    """

    payload: tuple[PersistentRepr, ...]

    def __post_init__(self) -> None:
        if not self.payload:
            raise ValueError("AtomicWrite needs at least one event")
        pid = self.payload[0].persistence_id
        first = self.payload[0].sequence_nr
        for i, repr_ in enumerate(self.payload):
            if repr_.persistence_id != pid:
                raise ValueError(
                    f"AtomicWrite mixes persistence ids {pid!r} and {repr_.persistence_id!r}"
                )
            if repr_.sequence_nr != first + i:
                raise ValueError("AtomicWrite sequence numbers must be consecutive")

    @property
    def persistence_id(self) -> str:
        """The persistence id shared by every event of the write."""
        return self.payload[0].persistence_id

    @property
    def lowest_sequence_nr(self) -> int:
        """Sequence number of the first event."""
        return self.payload[0].sequence_nr

    @property
    def highest_sequence_nr(self) -> int:
        """Sequence number of the last event."""
        return self.payload[-1].sequence_nr


class Journal(ABC):
    """Plugin API: an asynchronous event journal.

    Contract (the plugin TCK, `persistent_actors.testing.JournalSpec`, checks all of it):

    * each `AtomicWrite` is stored entirely or not at all;
    * writes of one persistence id are never reordered;
    * the highest sequence number of a persistence id never decreases, not even after
      `delete_messages_to` removed every event;
    * bounds are inclusive.

    All coroutines run on one event loop owned by the runtime; they are never called concurrently
    for the same persistence id. That loop runs only while the runtime waits for one of them:
    a task the plugin leaves running in the background makes progress during later calls only.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings: Mapping[str, Any] = dict(settings or {})

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: open connections; raise a clear error if the store is unusable."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: release every resource; must be idempotent."""

    async def receive_plugin_internal(self, message: Any) -> Any:
        """Plugin API: handle a plugin-specific command (Akka's ``ReceivePluginInternal``).

        Reached through ``ActorSystem.plugin_command``; the persistence test kit uses it to
        change a test plugin's behaviour. The default accepts nothing.
        """
        raise PluginError(f"{type(self).__name__} accepts no plugin commands (got {message!r})")

    @abstractmethod
    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: store `writes`, returning one entry per write, in order.

        `None` means stored; an exception means that write was *rejected* (not stored, e.g. a
        sequence-number conflict) and the others are unaffected. Raising means every write
        *failed*, and whether any was stored is unknown.
        """

    @abstractmethod
    def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: yield stored events with `from <= sequence_nr <= to`, at most `max_count`.

        Deleted events are skipped. Implementations stream (bounded memory), in sequence order.
        """

    @abstractmethod
    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the highest sequence number ever stored for the id (0 if none).

        Deleted events still count: the result never decreases. `from_sequence_nr` is a hint
        that nothing below it needs to be read.
        """

    @abstractmethod
    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Plugin API: permanently delete events up to `to_sequence_nr` (inclusive)."""
