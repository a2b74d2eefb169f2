"""Where an entity lives: entity id -> shard -> host index (the one place routing is computed).

An entity id maps to a shard by a stable hash (``zlib.crc32`` of its UTF-8 bytes, the same in
every process and run, unlike ``hash()``), and a shard to a host by ``shard % hosts``. The region
uses it to address a message, an entity host to know which shards it owns (remember-entities).
"""

from __future__ import annotations

import zlib

__all__ = ["host_of_shard", "shard_of", "shards_of_host"]


def shard_of(entity_id: str, shards: int) -> int:
    """The shard of `entity_id` among `shards` (stable across processes and runs)."""
    return zlib.crc32(entity_id.encode()) % shards


def host_of_shard(shard: int, hosts: int) -> int:
    """The index of the host (among `hosts`) that owns `shard`."""
    return shard % hosts


def shards_of_host(index: int, hosts: int, shards: int) -> range:
    """The shards owned by the host `index` among `hosts` (the inverse of `host_of_shard`)."""
    return range(index, shards, hosts)
