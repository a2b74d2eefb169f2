"""`ClusterRegion`: ``system.entities(...)`` in a cluster process, routed by shard leases.

An entity id maps to a shard as on one machine (``zlib.crc32 % shards``); the shard's owner
comes from PostgreSQL (`Routes`, cached per type for a second, and re-read at once when a
host answers `ShardNotOwned` or an ask times out); the message goes straight to the owner's
entity host by its TCP address (thespian carries it; no leader, no coordinator on the path).

Delivery, as in Akka's cluster sharding, is at most once: an ask that a host refused
(`ShardNotOwned`: not delivered) is sent again to the new owner within the ask's timeout; an
ask with no reply (the node died with it inside) fails with `AskTimeoutError` and is *not*
re-sent, since it may have been applied. A tell to a shard in handoff is dropped and logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import Any

from thespian.actors import ActorAddress
from thespian.system.transport.IPBase import TCPv4ActorAddress

from persistent_actors._actor import Actor, EntityRef, ExternalSender
from persistent_actors._config import ClusterSettings
from persistent_actors._endpoint import _check_timeout
from persistent_actors._region import EntityRegion, check_entity_id, shard_of
from persistent_actors.cluster._directory import Directory, LoopThread, Owner
from persistent_actors.cluster._messages import ShardNotOwned
from persistent_actors.errors import AskTimeoutError

log = logging.getLogger("persistent_actors")

__all__ = ["ClusterRegion", "Routes", "address_of", "address_text"]

# Seconds between re-reads of the owners while a shard has none (a failover in progress), and
# at least between two re-reads of one type (many askers refused at once share one query).
_POLL = 0.2
_MIN_REFRESH = 0.1
# Seconds cached owners are used before they are read again: a client that only tells learns
# of a rebalance or a failover no other way (its tells to the old owner were dropped, for
# ever). One query per type and process per second.
_MAX_AGE = 1.0
# Seconds a refused ask waits before it is sent again (the lease is moving).
_RETRY_PAUSE = 0.05


def address_text(address: Any) -> str:
    """The ``"ip:port"`` text of a thespian TCP actor address (what the directory stores)."""
    ip, port = address.addressDetails.sockname[:2]
    return f"{ip}:{port}"


@functools.lru_cache(maxsize=4096)
def address_of(text: str) -> Any:
    """The thespian address of the actor listening at ``"ip:port"`` (see `address_text`)."""
    ip, _, port = text.rpartition(":")
    return ActorAddress(TCPv4ActorAddress(ip, int(port), external=True))


class Routes:
    """Shard owners per entity type, read from PostgreSQL and cached; safe from any thread."""

    def __init__(self, settings: ClusterSettings, shards: int) -> None:
        self._directory = Directory(settings, shards)
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[float, dict[int, Owner]]] = {}

    def _started(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                loop = LoopThread("persistent_actors-cluster-routes")
                try:
                    loop.run(self._directory.start(), timeout=30)
                except BaseException:
                    loop.close()
                    raise
                self._loop = loop
            return self._loop

    def _cached(self, type_name: str, shard: int) -> Owner | None:
        entry = self._owners.get(type_name)
        if entry is None or time.monotonic() - entry[0] >= _MAX_AGE:
            return None
        return entry[1].get(shard)

    def _fresh_enough(self, type_name: str) -> bool:
        entry = self._owners.get(type_name)
        return entry is not None and time.monotonic() - entry[0] < _MIN_REFRESH

    def owner(self, type_name: str, shard: int, deadline: float) -> Owner:
        """The owner of `shard`, waiting (until the monotonic `deadline`) while it has none.

        Raises:
            AskTimeoutError: no live node holds the shard's lease by the deadline.

        """
        while True:
            owner = self._cached(type_name, shard)
            if owner is not None:
                return owner
            if not self._fresh_enough(type_name):
                loop = self._started()
                owners = loop.run(self._directory.owners(type_name), timeout=30)
                self._owners[type_name] = (time.monotonic(), owners)
                if shard in owners:
                    return owners[shard]
            if time.monotonic() >= deadline:
                raise AskTimeoutError(_unowned(type_name, shard))
            time.sleep(min(_POLL, max(deadline - time.monotonic(), 0.001)))

    async def owner_async(self, type_name: str, shard: int, deadline: float) -> Owner:
        """`owner` for a coroutine: waits without blocking the caller's event loop."""
        while True:
            owner = self._cached(type_name, shard)
            if owner is not None:
                return owner
            if not self._fresh_enough(type_name):
                loop = await asyncio.to_thread(self._started)
                owners = await loop.run_async(self._directory.owners(type_name))
                self._owners[type_name] = (time.monotonic(), owners)
                if shard in owners:
                    return owners[shard]
            if time.monotonic() >= deadline:
                raise AskTimeoutError(_unowned(type_name, shard))
            await asyncio.sleep(min(_POLL, max(deadline - time.monotonic(), 0.001)))

    def forget(self, type_name: str, owner: Owner) -> None:
        """`owner` may be stale: the next lookup of the type re-reads the directory."""
        entry = self._owners.get(type_name)
        if entry is not None and owner in entry[1].values():
            self._owners.pop(type_name, None)

    def close(self) -> None:
        """Close the connections and the loop thread; idempotent."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run(self._directory.close(), timeout=10)
            finally:
                loop.close()


def _unowned(type_name: str, shard: int) -> str:
    return (f"no live cluster node owns shard {shard} of entity type {type_name!r} (is a node "
            f"with [cluster.entities] {type_name} running? after a node failure its shards "
            "move once their leases expire, [cluster] lease_ttl)")


class ClusterRegion(EntityRegion):
    """The entities of one type across the cluster (see the module doc); same API as one host."""

    def __init__(self, type_name: str, cls: type[Actor], args: tuple[Any, ...],  # noqa: PLR0917
                 kwargs: dict[str, Any], shards: int, endpoint: ExternalSender,
                 routes: Routes) -> None:
        super().__init__(type_name, cls, args, kwargs, (), shards, endpoint)
        self._routes = routes

    def _ensure_running(self) -> None:
        # Always set here: a ClusterRegion is made by its system and never pickled.
        if self._endpoint is not None:
            self._endpoint.ensure_running()

    def _ref(self, entity_id: str, owner: Owner) -> EntityRef:
        shard = shard_of(entity_id, self._shards)
        host = owner.hosts[shard % len(owner.hosts)]
        return EntityRef(address_of(host), self._type_name, entity_id, self._endpoint)

    def ref(self, entity_id: str) -> EntityRef:
        """A ref to the entity at its shard's owner *now* (waits up to 5 s for one).

        After a failover or rebalance the ref leads to the old owner, which refuses (asks
        answer `ShardNotOwned`); use the region's `tell`/`ask`, which re-route.

        Raises:
            ValueError: `entity_id` is not a non-empty str of valid UTF-8 text.
            AskTimeoutError: no live node owns the entity's shard.
            PersistentActorsError: the actor system has been shut down.

        """
        check_entity_id(entity_id)
        # A shut-down system raises as a local region's does, rather than re-opening its routes
        # (a new loop thread and PostgreSQL pool) and waiting for an owner it cannot send to.
        self._ensure_running()
        shard = shard_of(entity_id, self._shards)
        owner = self._routes.owner(self._type_name, shard, time.monotonic() + 5.0)
        return self._ref(entity_id, owner)

    def tell(self, entity_id: str, message: Any, sender: Any = None) -> None:
        """Send to the entity at its shard's current owner (at most once; see the module doc).

        With no live owner within 5 s (every node down) the message is dropped with a
        warning: a tell never raises for the cluster's state (it raised AskTimeoutError).
        """
        try:
            ref = self.ref(entity_id)
        except AskTimeoutError as e:
            log.warning("cluster region %r: dropped a tell to %r: %s", self._type_name,
                        entity_id, e)
            return
        ref.tell(message, sender)

    def ask(self, entity_id: str, message: Any, timeout: float = 5.0) -> Any:
        """Ask the entity, re-sending within `timeout` while a host refuses the shard.

        Raises:
            AskTimeoutError: no reply within `timeout` (no owner, or the owner failed with the
                message inside: it may have been applied, so it is not re-sent).
            ValueError: `timeout` is not a positive, finite number of seconds.
            PersistentActorsError: the actor system has been shut down.

        """
        check_entity_id(entity_id)
        # As a local region's ask: a timeout that is no positive, finite number is a ValueError
        # naming it, before anything is sent (a str failed deep inside, an inf waited forever).
        _check_timeout(timeout)
        self._ensure_running()
        shard = shard_of(entity_id, self._shards)
        deadline = time.monotonic() + timeout
        refused = False
        while True:
            owner = self._routes.owner(self._type_name, shard, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and refused:
                raise AskTimeoutError(_refused(self._type_name, entity_id, shard, timeout))
            try:
                reply = self._ref(entity_id, owner).ask(message, max(remaining, 0.001))
            except AskTimeoutError as e:
                self._routes.forget(self._type_name, owner)
                raise AskTimeoutError(_lost(self._type_name, entity_id, owner, e)) from None
            if not isinstance(reply, ShardNotOwned):
                return reply
            refused = True
            self._routes.forget(self._type_name, owner)
            time.sleep(_RETRY_PAUSE)

    async def ask_async(self, entity_id: str, message: Any, timeout: float = 5.0) -> Any:
        """`ask` for a coroutine (see `ask`)."""
        check_entity_id(entity_id)
        _check_timeout(timeout)
        self._ensure_running()
        shard = shard_of(entity_id, self._shards)
        deadline = time.monotonic() + timeout
        refused = False
        while True:
            owner = await self._routes.owner_async(self._type_name, shard, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and refused:
                raise AskTimeoutError(_refused(self._type_name, entity_id, shard, timeout))
            try:
                reply = await self._ref(entity_id, owner).ask_async(message, max(remaining,
                                                                                  0.001))
            except AskTimeoutError as e:
                self._routes.forget(self._type_name, owner)
                raise AskTimeoutError(_lost(self._type_name, entity_id, owner, e)) from None
            if not isinstance(reply, ShardNotOwned):
                return reply
            refused = True
            self._routes.forget(self._type_name, owner)
            await asyncio.sleep(_RETRY_PAUSE)

    def __reduce__(self) -> tuple[Any, ...]:
        # Its routes (leases read from PostgreSQL, a loop thread) belong to this process: a
        # copy came out with its arguments shuffled and failed on its first use.
        raise TypeError(
            f"{self!r} cannot be handed to an actor or pickled: its shard owners are read "
            "from PostgreSQL by the process that made it; send from that process, or give "
            "the actor the refs it needs (region.ref(id))")

    def __repr__(self) -> str:
        return (f"ClusterRegion({self._type_name!r}, {self._cls.__qualname__}, "
                f"{self._shards} shards)")


def _lost(type_name: str, entity_id: str, owner: Owner, error: AskTimeoutError) -> str:
    return (f"{error} (entity {type_name}/{entity_id} on cluster node {owner.node_id!r}; if "
            "that node failed, the message may or may not have been applied and is not re-sent; "
            "its shards move to other nodes once their leases expire)")


def _refused(type_name: str, entity_id: str, shard: int, timeout: float) -> str:
    return (f"the owners of shard {shard} of entity type {type_name!r} refused "
            f"{type_name}/{entity_id} until the ask's timeout ({timeout:g}s): the shard was "
            "moving (a rebalance or failover), or this client's [sharding] shards differs from "
            "the cluster's; the message was not delivered")
