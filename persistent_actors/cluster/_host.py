"""`ClusterEntityHost`: an entity host that serves only the shards its node holds leases for.

The node tells its hosts their shards every membership round (`OwnShards`, valid for less than
the lease's time to live). A message for a shard the host does not own (any more, or not yet,
or its node stopped renewing) is not delivered: an ask gets `ShardNotOwned` back, which the
client's region answers by re-reading the owners; an entity still running in such a shard is
passivated, so the next owner recovers it from the journal with nothing stale left behind.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log
from persistent_actors._thespian.entity_host import EntityHost
from persistent_actors.cluster._messages import OwnShards, ShardNotOwned, ShardsOwned

__all__ = ["ClusterEntityHost"]


class ClusterEntityHost(EntityHost):
    """An `EntityHost` gated by shard leases (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._owned: frozenset[int] = frozenset()
        self._valid_until = 0.0

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        if isinstance(message, OwnShards):
            self._own(message, sender)
            return
        super().receiveMessage(message, sender)

    def _shard(self, entity_id: str) -> int:
        assert self._start is not None  # noqa: S101
        # The same stable hash as the region's shard_of (zlib.crc32 of the UTF-8 id).
        shards: int = self._start.sharding.shards
        return zlib.crc32(entity_id.encode()) % shards

    def _owns(self, shard: int) -> bool:
        return shard in self._owned and time.monotonic() < self._valid_until

    def _own(self, message: OwnShards, sender: Any) -> None:
        now = time.monotonic()
        before = self._owned if now < self._valid_until else frozenset()
        self._owned = message.shards
        self._valid_until = message.valid_until
        stopping = 0
        if self._start is not None:
            for cell in list(self._cells.values()):
                shard = self._shard(cell.entity_id)
                if shard not in message.shards:
                    stopping += 1
                    self.passivate(cell)
                elif shard not in before:  # owned again after a lapse: it may be stale
                    self.passivate(cell)
        self.send(sender, p.Reply(message.correlation_id, ShardsOwned(stopping)))

    def _deliver(self, entity_id: str, message: Any, sender: Any) -> None:
        shard = self._shard(entity_id)
        if self._owns(shard):
            super()._deliver(entity_id, message, sender)
            return
        cell = self._cells.get(entity_id)
        if cell is not None:
            self.passivate(cell)  # no-op if it is passivating already
        if isinstance(message, p.Envelope) and message.correlation_id is not None:
            reply_to = message.reply_to if message.reply_to is not None else sender
            self.send(reply_to, p.Reply(message.correlation_id,
                                        ShardNotOwned(self.type_name, entity_id, shard)))
            return
        log.warning("entity host %r: shard %d is not owned here; dropped a message for %s "
                    "(a tell is not re-routed: use ask for delivery you can check)",
                    self.type_name, shard, entity_id)
