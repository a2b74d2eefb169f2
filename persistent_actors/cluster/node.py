"""`Node`: one cluster node process (``persistent-actors node --config node.toml``).

A node is a multiproc-tcp `ActorSystem` in thespian's convention that hosts the entity types
of ``[cluster.entities]`` in lease-gated entity hosts (`ClusterEntityHost`, ``[sharding]
host_processes`` per type) and runs the membership loop on a thread of its own. Every
``heartbeat_interval`` one transaction (`Directory.round`) renews its heartbeat and leases
and claims free or expired leases up to its fair share; then its hosts learn the shards they
serve (`OwnShards`, until a deadline on the machine's monotonic clock: the lease's time to
live minus a margin, counted from before the renewal, so a node cut off from PostgreSQL stops
serving before its leases can pass on, however late the message reaches its hosts).

Rebalancing: a node above its fair share (a node joined) hands off at most
``rebalance_limit`` shards per round and type: its hosts stop serving them and passivate
their entities (pending persists finish first); once none runs (never before; a handoff
slower than ``handoff_timeout`` is logged) the node releases the leases, and a node below
its share claims them in its next round. Nothing is transferred: entities recover from the
journal on their next message. A stopping node (SIGTERM, SIGINT) hands off everything the
same way and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pkgutil
import threading
import time
from collections.abc import Mapping
from typing import Any

from persistent_actors import _protocol as p
from persistent_actors._actor import Actor
from persistent_actors._config import ClusterSettings, load_settings
from persistent_actors._system import ActorSystem
from persistent_actors.cluster._directory import Directory, LoopThread, Round
from persistent_actors.cluster._host import ClusterEntityHost
from persistent_actors.cluster._messages import OwnShards, ShardsOwned
from persistent_actors.cluster._region import address_text
from persistent_actors.cluster._transport import node_id_of
from persistent_actors.errors import AskTimeoutError, ClusterError, ConfigError

__all__ = ["Node"]

log = logging.getLogger("persistent_actors.cluster")


def entity_classes(cluster: ClusterSettings) -> dict[str, type[Actor]]:
    """Import the classes of ``[cluster.entities]``.

    Raises:
        ConfigError: a class cannot be imported or is no `Actor` subclass.

    """
    classes: dict[str, type[Actor]] = {}
    for type_name, spec in cluster.entities.items():
        try:
            cls = pkgutil.resolve_name(spec)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"config key cluster.entities.{type_name}: cannot import "
                              f"{spec!r}: {e}") from e
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise ConfigError(f"config key cluster.entities.{type_name}: {spec!r} is not a "
                              "persistent_actors.Actor subclass")
        classes[type_name] = cls
    return classes


class Node:
    """A cluster node (see the module doc): `start`, then `stop`; or `run` until a signal.

    Raises (from the constructor and `start`):
        ConfigError: no ``[cluster]`` section, no ``admin_port`` or no entity type, or an
            entity class cannot be imported.
        ClusterError: PostgreSQL is unreachable, or the shard count differs from the
            cluster's.

    """

    def __init__(self, config: Mapping[str, Any] | str | os.PathLike[str]) -> None:
        self._config = config
        settings = load_settings(config)
        cluster = settings.cluster
        if cluster is None:
            raise ConfigError("a node's config needs a [cluster] section (leader, admin_port, "
                              "[cluster.entities])")
        if cluster.admin_port is None:
            raise ConfigError("config key cluster.admin_port is required for a node (its "
                              "address in the convention and in the membership table)")
        if not cluster.entities:
            raise ConfigError("a node hosts the entity types of [cluster.entities] (e.g. "
                              "cart = \"samples.cart:UserCart\"); none are configured")
        self.settings = settings
        self.cluster: ClusterSettings = cluster
        self.node_id = node_id_of(cluster, cluster.admin_port)
        self.classes = entity_classes(cluster)
        self.system: ActorSystem | None = None
        self.incarnation = 0
        self._hosts: dict[str, tuple[Any, ...]] = {}
        self._loop: LoopThread | None = None
        self._directory = Directory(cluster, settings.sharding.shards)
        self._stopping = threading.Event()
        self._membership: Any = None  # the concurrent future of the membership loop
        self.owned: dict[str, frozenset[int]] = {}  # what the hosts serve (for tests, logs)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the actor system and hosts, register, and start the membership loop."""
        try:
            self.system = ActorSystem("node", config=self._config)
            for type_name, cls in self.classes.items():
                self._hosts[type_name] = self.system._start_entity_hosts(  # noqa: SLF001
                    type_name, cls, (), {}, ClusterEntityHost)
            self._loop = LoopThread("persistent_actors-cluster-node")
            self._loop.run(self._directory.start(), timeout=30)
            address = f"{self.cluster.bind_address}:{self.cluster.admin_port}"
            hosts = {t: [address_text(a) for a in hs] for t, hs in self._hosts.items()}
            self.incarnation = self._loop.run(
                self._directory.register(self.node_id, address, hosts), timeout=30)
            self._membership = asyncio.run_coroutine_threadsafe(self._run_membership(),
                                                                self._loop.loop)
        except BaseException:
            self.stop()
            raise
        log.info("cluster node %s (incarnation %d) started: %s", self.node_id,
                 self.incarnation, {t: len(h) for t, h in self._hosts.items()})

    def run(self) -> None:
        """`start`, then serve until SIGINT or SIGTERM; `stop` (a clean handoff) either way."""
        try:
            self.start()
            print(f"node {self.node_id} up: admin port {self.cluster.admin_port}, entity types "
                  f"{sorted(self.classes)}", flush=True)
            while not self._stopping.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Hand off every shard, leave the membership table, shut down; idempotent."""
        self._stopping.set()
        loop, self._loop = self._loop, None
        if loop is not None:
            if self._membership is not None:
                with contextlib.suppress(Exception):
                    self._membership.result(timeout=self.cluster.handoff_timeout + 30)
            with contextlib.suppress(Exception):
                loop.run(self._directory.close(), timeout=10)
            loop.close()
        system, self.system = self.system, None
        if system is not None:
            system.shutdown()

    # -- the membership loop -------------------------------------------------------------------
    async def _run_membership(self) -> None:
        types = sorted(self._hosts)
        handing_off: dict[str, frozenset[int]] = dict.fromkeys(types, frozenset())
        since: dict[str, float] = {}
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                await self._round(types, handing_off, since)
            except ClusterError as e:  # replaced by a newer incarnation: serve nothing, stop
                log.error("cluster node %s: %s; it stops serving", self.node_id, e)  # noqa: TRY400
                await self._serve_all(dict.fromkeys(types, frozenset()), 0.0)
                return
            except (OSError, TimeoutError) as e:  # the server is away: the leases run out
                log.warning("cluster node %s: membership round failed (%s: %s); its hosts "
                            "stop serving when the leases run out", self.node_id,
                            type(e).__name__, e)
            except Exception:  # the loop must go on: a dead loop stops the node serving
                log.exception("cluster node %s: membership round failed", self.node_id)
            await asyncio.sleep(max(self.cluster.heartbeat_interval -
                                    (time.monotonic() - began), 0))
        await self._leave(types)

    async def _round(self, types: list[str], handing_off: dict[str, frozenset[int]],
                     since: dict[str, float]) -> None:
        """One membership round: renew and claim, plan handoffs, tell the hosts, release."""
        cluster = self.cluster
        began = time.monotonic()
        rounds = await self._directory.round(self.node_id, self.incarnation, types,
                                             {t: not handing_off[t] for t in types})
        # The lease's expiry in PostgreSQL is at least `began` + lease_ttl (the renewal's
        # transaction starts after `began`); the hosts stop a margin before that.
        valid_until = began + cluster.lease_ttl - min(1.0, cluster.lease_ttl / 4)
        serve: dict[str, frozenset[int]] = {}
        for type_name, outcome in rounds.items():
            handing_off[type_name] = self._plan_handoff(
                type_name, outcome, handing_off[type_name], since)
            serve[type_name] = outcome.owned - handing_off[type_name]
        stopping = await self._serve_all(serve, valid_until)
        for type_name in types:
            if not handing_off[type_name]:
                continue
            if stopping.get(type_name) == 0:
                await self._directory.release(self.node_id, self.incarnation, type_name,
                                              handing_off[type_name])
                handing_off[type_name] = frozenset()
            elif time.monotonic() - since.get(type_name, math.inf) > cluster.handoff_timeout:
                # Never released while one runs: a stopping entity may still persist what it
                # had stashed, and the next owner must recover after that, not before.
                log.warning("cluster node %s: %s entities of %r still stopping after "
                            "handoff_timeout; the handoff waits for them", self.node_id,
                            stopping.get(type_name), type_name)
                since[type_name] = time.monotonic()

    def _plan_handoff(self, type_name: str, outcome: Round, current: frozenset[int],
                      since: dict[str, float]) -> frozenset[int]:
        """The shards of `type_name` to hand off: the current handoff, or a new bounded one."""
        if current:
            return current & outcome.owned
        extra = len(outcome.owned) - outcome.fair
        if extra <= 0:
            return frozenset()
        chosen = frozenset(sorted(outcome.owned)[-min(extra, self.cluster.rebalance_limit):])
        since[type_name] = time.monotonic()
        log.info("cluster node %s: handing off %d shard(s) of %r (%d live nodes, fair share %d)",
                 self.node_id, len(chosen), type_name, outcome.live, outcome.fair)
        return chosen

    async def _serve_all(self, serve: dict[str, frozenset[int]],
                         valid_until: float) -> dict[str, int]:
        """Tell every host what it serves; per type, the entities still stopping (or -1)."""
        system = self.system
        assert system is not None  # noqa: S101
        self.owned = dict(serve)

        def ask(host: Any, shards: frozenset[int]) -> ShardsOwned | Any:
            """The host's answer, or (no answer) the address the guardian has for it now."""
            try:
                reply = system.endpoint.request(
                    host, lambda corr: OwnShards(shards, valid_until, corr), timeout=2.0,
                    what="telling an entity host its shards")
            except AskTimeoutError:
                log.warning("cluster node %s: an entity host did not confirm its shards",
                            self.node_id)
                with contextlib.suppress(AskTimeoutError):
                    return system.endpoint.request(
                        system.endpoint.guardian, lambda corr: p.CurrentAddress(host, corr),
                        timeout=2.0, what="asking the guardian where an entity host is")
                return None
            return reply

        out: dict[str, int] = {}
        moved = False
        for type_name, shards in serve.items():
            hosts = self._hosts[type_name]
            replies = await asyncio.gather(*(asyncio.to_thread(ask, host, shards)
                                             for host in hosts))
            counts = [r.stopping for r in replies if isinstance(r, ShardsOwned)]
            out[type_name] = sum(counts) if len(counts) == len(replies) else -1
            for index, reply in enumerate(replies):
                # The guardian restarted a crashed host process: clients need its new address.
                if reply is not None and not isinstance(reply, ShardsOwned) and \
                        address_text(reply) != address_text(hosts[index]):
                    log.warning("cluster node %s: entity host %d of %r restarted at %s; "
                                "publishing its address", self.node_id, index, type_name,
                                address_text(reply))
                    self._hosts[type_name] = hosts = (*hosts[:index], reply, *hosts[index + 1:])
                    moved = True
        if moved:
            await self._directory.publish_hosts(
                self.node_id, self.incarnation,
                {t: [address_text(a) for a in hs] for t, hs in self._hosts.items()})
        return out

    async def _leave(self, types: list[str]) -> None:
        """A clean stop: stop every entity, release every lease, remove the node's row."""
        empty = dict.fromkeys(types, frozenset[int]())
        deadline = time.monotonic() + self.cluster.handoff_timeout
        with contextlib.suppress(Exception):
            while True:
                stopping = await self._serve_all(empty, 0.0)
                if all(n == 0 for n in stopping.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            if not all(n == 0 for n in stopping.values()):
                # An entity may still persist: its leases expire on their own instead.
                log.warning("cluster node %s: entities still stopping at shutdown; its leases "
                            "expire after lease_ttl", self.node_id)
                return
            rounds = await self._directory.round(self.node_id, self.incarnation, types,
                                                 dict.fromkeys(types, False))
            for type_name, outcome in rounds.items():
                await self._directory.release(self.node_id, self.incarnation, type_name,
                                              outcome.owned)
            await self._directory.leave(self.node_id, self.incarnation)
