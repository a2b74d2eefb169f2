"""Membership and shard leases in PostgreSQL: the cluster's only authority.

Two tables in the default journal's schema, created on first use:

* ``cluster_nodes(node_id, address, incarnation, hosts, heartbeat_at)``: one row per node; it
  renews ``heartbeat_at`` every round. ``hosts`` is JSON text ``{type: ["ip:port", ...]}``:
  the TCP addresses of the node's entity hosts (text, never a pickle). A node restarted under
  the same id gets the next ``incarnation``; the old one's rows stop counting.
* ``shard_leases(type_name, shard, node_id, incarnation, expires_at)``: one row per shard,
  all created up front. A node serves a shard only while it holds the unexpired lease.

Every time is the server's ``now()``: one clock for the whole cluster. Allocation is
leaderless: every round, each node (one transaction) renews its leases, counts the live nodes
hosting the type, and claims expired or free leases up to its fair share ``ceil(shards /
live)`` with ``SELECT ... FOR UPDATE SKIP LOCKED`` (two nodes never claim the same row). A
node above its share hands some off (bounded per round; see `node.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Coroutine
from typing import Any, NamedTuple, TypeVar

from persistent_actors._config import ClusterSettings
from persistent_actors.errors import ClusterError

__all__ = ["Directory", "LoopThread", "Owner", "Round"]

T = TypeVar("T")
# Advisory-lock class id ("PAC1") of the one-time table setup.
_SETUP_LOCK = 0x50414331


class LoopThread:
    """An asyncio loop on a daemon thread of its own, for callers on any thread or loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for its result (at most `timeout` seconds)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the loop, from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        """Stop the loop and its thread, and the loop's executor threads (name lookups)."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            # asyncpg resolves host names in the loop's default executor: its worker threads
            # would otherwise outlive the loop (and be copied into every later fork).
            self.run(self.loop.shutdown_default_executor(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class Owner(NamedTuple):
    """The owner of a shard."""

    node_id: str
    hosts: tuple[str, ...]  # its entity hosts of the type ("ip:port"); shard % len(hosts)


class Round(NamedTuple):
    """One membership round's outcome for an entity type."""

    owned: frozenset[int]  # the shards this node holds leases for now
    fair: int  # ceil(shards / live nodes)
    live: int  # live nodes hosting the type (heartbeat younger than the lease time to live)


class Directory:
    """The PostgreSQL side of membership and leases (all methods are coroutines on one loop).

    Raises (from `start`):
        ClusterError: the server cannot be reached, or the stored shard count of a type
            differs from this process's ``[sharding] shards``.

    """

    def __init__(self, settings: ClusterSettings, shards: int) -> None:
        self.settings = settings
        self.shards = shards
        self._pool: Any = None
        self._schema = '"' + settings.schema + '"'
        self._shards_checked: set[str] = set()  # types whose stored shard count matched

    def _check_shards(self, type_name: str, stored: int, who: str) -> None:
        """Refuse a `stored` shard count (0: none stored yet) other than this process's."""
        if stored and stored != self.shards:
            raise ClusterError(
                f"entity type {type_name!r} has {stored} shards in the cluster, this {who} "
                f"is configured with [sharding] shards = {self.shards}; the number of shards "
                "is fixed for the life of the cluster (every node and client must use it)")
        if stored:
            self._shards_checked.add(type_name)

    def _t(self, name: str) -> str:
        return f"{self._schema}.{name}"

    async def start(self) -> None:
        """Connect and create the tables if missing."""
        import asyncpg  # noqa: PLC0415 - the postgres extra; only cluster processes need it

        try:
            self._pool = await asyncpg.create_pool(self.settings.dsn, min_size=1, max_size=2,
                                                   timeout=10)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise ClusterError(f"the cluster's PostgreSQL is not reachable (the "
                               f"[persistence.journal] dsn): {type(e).__name__}: {e}") from e
        async with self._pool.acquire() as c, c.transaction():
            await c.execute(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK}, 0)")
            await c.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
            await c.execute(f"""
                CREATE TABLE IF NOT EXISTS {self._t('cluster_nodes')} (
                    node_id text PRIMARY KEY,
                    address text NOT NULL,
                    incarnation bigint NOT NULL,
                    hosts jsonb NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now(),
                    heartbeat_at timestamptz NOT NULL)""")
            await c.execute(f"""
                CREATE TABLE IF NOT EXISTS {self._t('shard_leases')} (
                    type_name text NOT NULL,
                    shard integer NOT NULL,
                    node_id text,
                    incarnation bigint,
                    expires_at timestamptz NOT NULL,
                    PRIMARY KEY (type_name, shard))""")

    async def close(self) -> None:
        """Close the connections."""
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    # -- a node's side -------------------------------------------------------------------------
    async def register(self, node_id: str, address: str, hosts: dict[str, list[str]]) -> int:
        """Add or replace this node's row; create the lease rows of its types. Its incarnation."""
        async with self._pool.acquire() as c, c.transaction():
            for type_name in hosts:
                stored = await c.fetchval(
                    f"SELECT count(*) FROM {self._t('shard_leases')} WHERE type_name = $1",
                    type_name)
                self._check_shards(type_name, stored, "node")
                await c.execute(
                    f"""INSERT INTO {self._t('shard_leases')} (type_name, shard, expires_at)
                        SELECT $1, s, '-infinity' FROM generate_series(0, $2 - 1) AS s
                        ON CONFLICT DO NOTHING""", type_name, self.shards)
            incarnation: int = await c.fetchval(
                f"""INSERT INTO {self._t('cluster_nodes')}
                        (node_id, address, incarnation, hosts, heartbeat_at)
                    VALUES ($1, $2, 1, $3::jsonb, now())
                    ON CONFLICT (node_id) DO UPDATE SET address = excluded.address,
                        incarnation = {self._t('cluster_nodes')}.incarnation + 1,
                        hosts = excluded.hosts, started_at = now(), heartbeat_at = now()
                    RETURNING incarnation""", node_id, address, json.dumps(hosts))
            return incarnation

    async def round(self, node_id: str, incarnation: int, types: list[str],
                    want: dict[str, bool]) -> dict[str, Round]:
        """Heartbeat, renew this node's leases, claim up to the fair share where `want`.

        Raises:
            ClusterError: another process registered under this node id (a newer
                incarnation): this one must stop serving.

        """
        ttl = self.settings.lease_ttl
        out: dict[str, Round] = {}
        async with self._pool.acquire() as c, c.transaction():
            alive = await c.execute(
                f"""UPDATE {self._t('cluster_nodes')} SET heartbeat_at = now()
                    WHERE node_id = $1 AND incarnation = $2""", node_id, incarnation)
            if alive != "UPDATE 1":
                raise ClusterError(f"node {node_id!r} incarnation {incarnation} was replaced "
                                   "by a newer process under the same node id")
            for type_name in types:
                renewed = {r[0] for r in await c.fetch(
                    f"""UPDATE {self._t('shard_leases')}
                        SET expires_at = now() + make_interval(secs => $4)
                        WHERE type_name = $1 AND node_id = $2 AND incarnation = $3
                          AND expires_at > now() RETURNING shard""",
                    type_name, node_id, incarnation, ttl)}
                live: int = await c.fetchval(
                    f"""SELECT count(*) FROM {self._t('cluster_nodes')}
                        WHERE heartbeat_at > now() - make_interval(secs => $2)
                          AND hosts ? $1""", type_name, ttl)
                fair = math.ceil(self.shards / max(live, 1))
                claimed: set[int] = set()
                if want.get(type_name, True) and len(renewed) < fair:
                    claimed = {r[0] for r in await c.fetch(
                        f"""UPDATE {self._t('shard_leases')} AS l
                            SET node_id = $2, incarnation = $3,
                                expires_at = now() + make_interval(secs => $4)
                            FROM (SELECT shard FROM {self._t('shard_leases')}
                                  WHERE type_name = $1 AND expires_at <= now()
                                  ORDER BY shard LIMIT $5 FOR UPDATE SKIP LOCKED) AS free
                            WHERE l.type_name = $1 AND l.shard = free.shard
                            RETURNING l.shard""",
                        type_name, node_id, incarnation, ttl, fair - len(renewed))}
                out[type_name] = Round(frozenset(renewed | claimed), fair, live)
        return out

    async def release(self, node_id: str, incarnation: int, type_name: str,
                      shards: frozenset[int]) -> None:
        """Give up leases (after their entities stopped): free for any node at once."""
        async with self._pool.acquire() as c:
            await c.execute(
                f"""UPDATE {self._t('shard_leases')}
                    SET node_id = NULL, incarnation = NULL, expires_at = '-infinity'
                    WHERE type_name = $1 AND shard = ANY($2::int[]) AND node_id = $3
                      AND incarnation = $4""", type_name, sorted(shards), node_id, incarnation)

    async def publish_hosts(self, node_id: str, incarnation: int,
                            hosts: dict[str, list[str]]) -> None:
        """Replace this node's host addresses (a host process was restarted elsewhere)."""
        async with self._pool.acquire() as c:
            await c.execute(f"UPDATE {self._t('cluster_nodes')} SET hosts = $3::jsonb "
                            "WHERE node_id = $1 AND incarnation = $2",
                            node_id, incarnation, json.dumps(hosts))

    async def leave(self, node_id: str, incarnation: int) -> None:
        """Remove this node's row (a clean stop; its leases were released)."""
        async with self._pool.acquire() as c:
            await c.execute(f"DELETE FROM {self._t('cluster_nodes')} "
                            "WHERE node_id = $1 AND incarnation = $2", node_id, incarnation)

    # -- a client's side -----------------------------------------------------------------------
    async def owners(self, type_name: str) -> dict[int, Owner]:
        """Shard -> its owner, for the shards with an unexpired lease of a current node.

        Raises:
            ClusterError: the type's stored shard count differs from this process's (a
                client with another ``[sharding] shards`` would send each entity's messages
                to the owner of another shard, which refuses them).

        """
        async with self._pool.acquire() as c:
            if type_name not in self._shards_checked:  # once per type, once a node stored it
                self._check_shards(type_name, await c.fetchval(
                    f"SELECT count(*) FROM {self._t('shard_leases')} WHERE type_name = $1",
                    type_name), "client")
            rows = await c.fetch(
                f"""SELECT l.shard, l.node_id, n.hosts -> $1 AS hosts
                    FROM {self._t('shard_leases')} l JOIN {self._t('cluster_nodes')} n
                      ON n.node_id = l.node_id AND n.incarnation = l.incarnation
                    WHERE l.type_name = $1 AND l.expires_at > now()""", type_name)
        out: dict[int, Owner] = {}
        for shard, node_id, hosts in rows:
            addresses = tuple(json.loads(hosts)) if hosts is not None else ()
            if addresses:
                out[shard] = Owner(node_id, addresses)
        return out

    async def nodes(self) -> list[tuple[str, str, float]]:
        """``(node_id, address, seconds since its heartbeat)`` of every registered node."""
        async with self._pool.acquire() as c:
            rows = await c.fetch(
                f"""SELECT node_id, address,
                           extract(epoch FROM now() - heartbeat_at)::float8
                    FROM {self._t('cluster_nodes')} ORDER BY node_id""")
        return [(r[0], r[1], r[2]) for r in rows]
