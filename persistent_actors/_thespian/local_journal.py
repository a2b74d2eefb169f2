"""A shared host's own instances of its actors' journals: writes without a process hop.

On multiproc-tcp a journal plugin runs in a process of its own (`PluginHost`), so each write
of an actor in a shared host (``[actor_system] host_processes``) costs two TCP frames and two
pickles, and the host waits for the journal's round trip before the actor's next command. A
journal whose plugin declares `Journal.concurrent_writers` (a file or a server that many
processes may write at once: the SQLite and PostgreSQL journals) is therefore also started
inside each shared host that has actors using it, and the host writes its actors' events with
that instance: the writes its actors request while it handles what its sockets hold are
gathered and stored in one ``write_messages`` (group commit, as the plugin host does), once
the transport has read what was ready (`lean_loop.after_reads`), and the results are handed
to the actors as their next messages.

Everything else (replay, deletes, the highest sequence number, plugin commands, queries) still
goes to the journal's plugin process, which reads what the hosts committed. So that a read
never overtakes a write of the same host, whatever the host gathered is written before any
other request to that journal leaves (a replay after a restart sees every earlier write).
Writes of one persistence id come from one host at a time (one live actor per id), in order.
A journal that cannot start in the host, or does not declare `concurrent_writers` in its own
class body, is used through its plugin process, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log
from persistent_actors._thespian.plugin_host import close_plugin, start_plugin, write_batch
from persistent_actors.journal import Journal

__all__ = ["LocalJournals"]


def _key(address: Any) -> Any:
    return getattr(address, "addressDetails", address)


def _concurrent(plugin: Any) -> bool:
    """True if `plugin`'s own class declares it may be written from many processes."""
    declared = vars(type(plugin)).get("concurrent_writers")
    return isinstance(plugin, Journal) and callable(declared) and plugin.concurrent_writers()


def _not_written(_journal: Journal) -> None:
    """Nothing in a host process waits for a local commit (live queries read the store)."""


class _Local:
    """One started journal instance and the writes gathered for it."""

    __slots__ = ("address", "journal", "loop", "name", "pending")

    def __init__(self, address: Any, journal: Journal, loop: Any, name: str) -> None:
        self.address = address
        self.journal = journal
        self.loop = loop
        self.name = name
        self.pending: list[p.WriteMessages] = []


class LocalJournals:
    """The journals a shared host writes itself, by the address of their plugin actor."""

    def __init__(self, host_name: str) -> None:
        self._host_name = host_name
        # `_key(address)` -> its instance here, or None: through the plugin process.
        self._by_key: dict[Any, _Local | None] = {}
        self._gathering: list[_Local] = []  # those with pending writes, in first-write order

    def register(self, address: Any, start: p.StartPlugin | None) -> bool:
        """Start the journal `start` describes here, if its plugin allows; True if this call did.

        Decided once per address (a later call returns False): a plugin that does not declare
        `concurrent_writers`, or fails to start here (logged), is used through its plugin
        process.
        """
        key = _key(address)
        if key in self._by_key:
            return False
        local: _Local | None = None
        if start is not None:
            name = f"persistent_actors-{start.kind}:{start.plugin_id}@{self._host_name}"
            try:
                started = start_plugin(start, name, accept=_concurrent)
            except Exception:  # noqa: BLE001 - the plugin process still serves it
                log.warning("shared host: journal %s could not start in this process; its "
                            "writes go to its plugin process", start.plugin_id, exc_info=True)
                started = None
            if started is not None:
                local = _Local(address, started[0], started[1], name)
        self._by_key[key] = local
        return local is not None

    def is_local(self, address: Any) -> bool:
        """True if the journal at `address` runs in this process."""
        return self._by_key.get(_key(address)) is not None

    def write(self, address: Any, request: p.WriteMessages) -> bool:
        """Gather `request` for the journal at `address`; True if it is written here.

        The caller arranges a `flush` soon (the first write of a batch returns True with
        `has_pending` newly set).
        """
        local = self._by_key.get(_key(address))
        if local is None:
            return False
        if not local.pending:
            self._gathering.append(local)
        local.pending.append(request)
        return True

    @property
    def has_pending(self) -> bool:
        """True while writes are gathered and not yet written."""
        return bool(self._gathering)

    def flush(self, answer: Callable[[Any, p.WriteMessagesResult], None]) -> None:
        """Write everything gathered (one ``write_messages`` per journal) and `answer` each.

        `answer(address, result)` gets each request's result, in request order per journal.
        """
        while self._gathering:
            local = self._gathering.pop(0)
            batch, local.pending = local.pending, []
            outcomes = write_batch(local.loop.run, local.journal, batch, _not_written)
            for request, outcome in zip(batch, outcomes, strict=True):
                answer(local.address, p.WriteMessagesResult(outcome, request.actor_instance_id))

    def close(self) -> None:
        """Close every journal started here (after a last `flush` by the caller)."""
        for local in self._by_key.values():
            if local is not None:
                close_plugin(local.journal, local.loop, local.name)
        self._by_key.clear()
        self._gathering.clear()
