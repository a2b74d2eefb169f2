"""Akka's replay filter: detect, and repair or refuse, a history written by several writers.

Every stored event carries the id of the actor incarnation that wrote it (`writer_uuid`). If two
incarnations with one persistence id ever wrote at once (two processes, a split brain), the
replayed history interleaves their events. Recovery passes the replay through this filter,
which holds back the last `window_size` events and follows the writers:

* a new writer appearing makes the previous one *old*; events of an old writer arriving later,
  and events the new writer's first event contradicts (same or higher sequence number from
  another writer, still in the window), are the "old" events;
* an event of the current writer with a lower sequence number than its previous one is out of
  order.

Mode `repair-by-discard-old` (the default) drops those events and logs a warning; `fail` fails
recovery with `ReplayFilterError`; `warn` logs and replays everything; `off` does nothing.
The same algorithm as Akka's ``ReplayFilter`` (akka_features.md), on the stored form, before
any event is decoded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Final

from persistent_actors.errors import ReplayFilterError
from persistent_actors.stored import PersistentRepr, ReplayedRows

__all__ = ["REPLAY_FILTER_MODES", "ReplayFilter", "ReplayFilterSettings"]

REPAIR: Final = "repair-by-discard-old"
FAIL: Final = "fail"
WARN: Final = "warn"
OFF: Final = "off"
REPLAY_FILTER_MODES: Final = (REPAIR, FAIL, WARN, OFF)

log = logging.getLogger("persistent_actors.persistence")


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayFilterSettings:
    """``[persistence.replay_filter]``: Akka's ``replay-filter`` (same defaults)."""

    mode: str = REPAIR
    window_size: int = 100
    max_old_writers: int = 10


class ReplayFilter:
    """Filters one recovery's replayed events; `feed` each chunk, then `flush` at the end."""

    __slots__ = ("_buffer", "_held", "_max_old_writers", "_mode", "_old_writers", "_persistence_id",
                 "_sequence_nr", "_window_size", "_writer")

    def __init__(self, settings: ReplayFilterSettings, persistence_id: str) -> None:
        self._mode = settings.mode
        self._window_size = settings.window_size
        self._max_old_writers = settings.max_old_writers
        self._persistence_id = persistence_id
        self._buffer: deque[PersistentRepr] = deque()
        # Or, after `feed_rows` moved a page, the held events as columns (the deque is empty).
        self._held: ReplayedRows | None = None
        self._old_writers: OrderedDict[str, None] = OrderedDict()
        self._writer = ""
        self._sequence_nr = 0

    def feed(self, events: Iterable[PersistentRepr]) -> list[PersistentRepr]:
        """Take replayed events; return those that left the window and may be applied.

        Raises:
            ReplayFilterError: mode ``fail`` and the history has more than one writer.

        """
        self._unpack_held()
        released: list[PersistentRepr] = []
        buffer, window = self._buffer, self._window_size
        for event in events:
            if len(buffer) >= window:
                released.append(buffer.popleft())
            if event.writer_uuid == self._writer:
                if event.sequence_nr < self._sequence_nr:
                    self._issue(
                        f"event {event.sequence_nr} of {self._persistence_id!r} (writer "
                        f"{event.writer_uuid!r}) comes after event {self._sequence_nr} of the "
                        "same writer: events were stored out of order, or two actors share "
                        "this persistence id")
                    if self._mode == WARN:
                        buffer.append(event)
                else:
                    buffer.append(event)
                    self._sequence_nr = event.sequence_nr
            elif event.writer_uuid in self._old_writers:
                self._issue(
                    f"event {event.sequence_nr} of {self._persistence_id!r} comes from writer "
                    f"{event.writer_uuid!r}, after a newer writer {self._writer!r} wrote event "
                    f"{self._sequence_nr}: the old writer kept writing after the new one "
                    "started, or two actors share this persistence id")
                if self._mode == WARN:
                    buffer.append(event)
            else:
                self._new_writer(event)
        return released

    def feed_rows(self, rows: ReplayedRows) -> list[ReplayedRows]:
        """`feed` for a page of columns: the events that left the window, in order.

        A page that continues the current writer in sequence order (no event of it can be an
        issue) only moves the window: the held events and all but the page's last
        `window_size` leave as they are, without an object per event. Any other page goes
        through `feed` event by event (after its first event alone, if only that one
        differs: the usual start of a new writer).
        """
        released: list[ReplayedRows] = []
        for attempt in range(2):
            if not len(rows):
                return released
            if self._continues_writer(rows):
                released.extend(self._slide(rows))
                return released
            if attempt == 0:  # perhaps a new writer: its first event alone, then again
                head = self.feed(rows.slice(0, 1).reprs(self._persistence_id))
                if head:
                    released.append(ReplayedRows.of(head))
                rows = rows.slice(1)
        slow = self.feed(rows.reprs(self._persistence_id))
        if slow:
            released.append(ReplayedRows.of(slow))
        return released

    def _continues_writer(self, rows: ReplayedRows) -> bool:
        """True if `feed` would hold every event of `rows` and find no issue."""
        nrs = rows.sequence_nrs
        return (rows.writer_uuids.count(self._writer) == len(nrs)
                and nrs[0] >= self._sequence_nr and list(nrs) == sorted(nrs))

    def _slide(self, rows: ReplayedRows) -> list[ReplayedRows]:
        """Hold `rows` (see `_continues_writer`): what `feed` releases, as rows.

        The window stays columns (`_held`), so a page costs no object per event.
        """
        held = self._held
        if held is None and self._buffer:
            held = ReplayedRows.of(self._buffer)
            self._buffer.clear()  # in place: `feed` holds a reference to the deque
        combined = rows if held is None else held.concat(rows)
        self._sequence_nr = rows.sequence_nrs[-1]
        leaving = len(combined) - self._window_size
        if leaving <= 0:
            self._held = combined
            return []
        self._held = combined.slice(leaving)
        return [combined.slice(0, leaving)]

    def _unpack_held(self) -> None:
        """Move the events held as columns into the deque, for the event-by-event path."""
        if self._held is not None:
            self._buffer.extend(self._held.reprs(self._persistence_id))
            self._held = None

    def _new_writer(self, event: PersistentRepr) -> None:
        if self._writer:
            self._old_writers[self._writer] = None
            if len(self._old_writers) > self._max_old_writers:
                self._old_writers.popitem(last=False)
        self._writer, self._sequence_nr = event.writer_uuid, event.sequence_nr
        kept: list[PersistentRepr] = []
        for held in self._buffer:
            if held.sequence_nr >= event.sequence_nr:
                self._issue(
                    f"event {event.sequence_nr} of {self._persistence_id!r} from a new writer "
                    f"{event.writer_uuid!r} follows event {held.sequence_nr} of writer "
                    f"{held.writer_uuid!r}: two actors share this persistence id")
                if self._mode != WARN:
                    continue
            kept.append(held)
        kept.append(event)
        self._buffer.clear()  # in place: `feed` holds a reference to the deque
        self._buffer.extend(kept)

    def _issue(self, message: str) -> None:
        if self._mode == FAIL:
            raise ReplayFilterError(message)
        log.warning("replay filter (%s): %s; the event is %s", self._mode, message,
                    "discarded" if self._mode == REPAIR else "replayed anyway")

    def flush(self) -> list[PersistentRepr]:
        """Return the events still held back (the replay ended)."""
        self._unpack_held()
        released = list(self._buffer)
        self._buffer.clear()
        return released

    def flush_rows(self) -> ReplayedRows:
        """`flush`, as columns."""
        held, self._held = self._held, None
        if held is not None:
            return held
        return ReplayedRows.of(self.flush())
