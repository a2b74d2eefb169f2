"""`EntityRegion`: the front end of one entity type (Akka's ShardRegion).

An entity id maps to a shard and a shard to a host as `persistent_actors._sharding` computes
it. The region only addresses messages; the entity hosts start, run and passivate entities.
"""

from __future__ import annotations

from typing import Any

from persistent_actors._actor import Actor, EntityRef, ExternalSender
from persistent_actors._sharding import host_of_shard, shard_of
from persistent_actors.stored import unstorable

__all__ = ["EntityRegion", "shard_of"]


def check_entity_id(entity_id: Any) -> str:
    """Return `entity_id` if it is a non-empty str a journal can store; raise otherwise."""
    if not isinstance(entity_id, str) or not entity_id:
        raise ValueError(f"an entity id must be a non-empty str, got {entity_id!r}")
    reason = unstorable(entity_id)
    if reason is not None:
        raise ValueError(f"entity id {entity_id[:80]!r} cannot be stored: {reason}")
    return entity_id


class EntityRegion:
    """The entities of one type, addressed by id: ``system.entities(type_name, cls, ...)``.

    An entity is started on its first message as ``cls(entity_id, *args, **kwargs)``; there is
    no ``actor_of`` and no name to clash. Safe to use from any thread and event loop.
    """

    def __init__(self, type_name: str, cls: type[Actor], args: tuple[Any, ...],  # noqa: PLR0917
                 kwargs: dict[str, Any], hosts: tuple[Any, ...], shards: int,
                 endpoint: ExternalSender | None) -> None:
        self._type_name = type_name
        self._cls = cls
        self._args = args
        self._kwargs = kwargs
        self._hosts = hosts
        self._shards = shards
        self._endpoint = endpoint

    @property
    def type_name(self) -> str:
        """The entity type's name."""
        return self._type_name

    @property
    def entity_class(self) -> type[Actor]:
        """The class every entity of this type is an instance of."""
        return self._cls

    def same_definition(self, cls: type[Actor], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> bool:
        """True if ``entities(type_name, cls, *args, **kwargs)`` describes this region."""
        return cls is self._cls and args == self._args and kwargs == self._kwargs

    def ref(self, entity_id: str) -> EntityRef:
        """An `ActorRef` to the entity `entity_id` (it starts when a message reaches it).

        Raises:
            ValueError: `entity_id` is not a non-empty str of valid UTF-8 text.

        """
        check_entity_id(entity_id)
        host = self._hosts[host_of_shard(shard_of(entity_id, self._shards), len(self._hosts))]
        return EntityRef(host, self._type_name, entity_id, self._endpoint)

    def tell(self, entity_id: str, message: Any, sender: Any = None) -> None:
        """Send `message` to the entity `entity_id` without waiting (see `ActorRef.tell`)."""
        self.ref(entity_id).tell(message, sender)

    def ask(self, entity_id: str, message: Any, timeout: float = 5.0) -> Any:
        """Send `message` to the entity and block for its reply (see `ActorRef.ask`).

        Raises:
            AskTimeoutError: no reply within `timeout` seconds.

        """
        return self.ref(entity_id).ask(message, timeout)

    async def ask_async(self, entity_id: str, message: Any, timeout: float = 5.0) -> Any:
        """Send `message` to the entity and await its reply (see `ActorRef.ask_async`).

        Raises:
            AskTimeoutError: no reply within `timeout` seconds.

        """
        return await self.ref(entity_id).ask_async(message, timeout)

    def __reduce__(self) -> tuple[Any, ...]:
        # An actor given the region (a front end, a saga) uses it from its own process; the
        # endpoint stays behind as a ref's does: inside an actor, sends go through its context.
        return (type(self), (self._type_name, self._cls, self._args, self._kwargs, self._hosts,
                             self._shards, None))

    def __repr__(self) -> str:
        return (f"EntityRegion({self._type_name!r}, {self._cls.__qualname__}, "
                f"{len(self._hosts)} host(s), {self._shards} shards)")
