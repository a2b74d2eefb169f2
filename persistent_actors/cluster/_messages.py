"""The cluster's messages between a node, its entity hosts and clients (frozen dataclasses)."""

from __future__ import annotations

import dataclasses

__all__ = ["OwnShards", "ShardNotOwned", "ShardsOwned"]


@dataclasses.dataclass(frozen=True, slots=True)
class OwnShards:
    """Node -> its entity hosts: serve exactly `shards` until `valid_until`.

    Sent every membership round (the lease renewal). `valid_until` is a `time.monotonic()`
    deadline of the node's machine (the hosts are its child processes: one clock), taken
    before the renewal started minus a margin, so it passes before the lease can expire in
    PostgreSQL however late the message arrives. After it the host serves no shard: a node cut
    off from PostgreSQL stops before its leases can pass to another node. Answered
    ``Reply(correlation_id, ShardsOwned(...))``.
    """

    shards: frozenset[int]
    valid_until: float
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ShardsOwned:
    """Entity host -> node: how many of its entities still run in shards it does not own.

    A handoff waits for 0 (the entities stopped, their pending persists done) before the
    node releases the leases.
    """

    stopping: int


@dataclasses.dataclass(frozen=True, slots=True)
class ShardNotOwned:
    """Entity host -> asker: the message was *not* delivered; this host does not own the shard.

    The region re-reads the owners and sends again (safe: nothing was applied).
    """

    type_name: str
    entity_id: str
    shard: int
