"""The simple base's external side without a hop: a batch goes straight into the send queue.

On the simple base thespian runs every actor inside the external call that sends to it, on the
calling thread (the driver's). Sending a batch of external messages as one `IngressBatch` (so
they all run in one pass and their persists share a transaction) cost an extra thespian
dispatch per message: the ingress actor's receive and its forward. Appending them all to the
base's queue of pending sends and then running it once gives the same pass (every message from
the same sender, in order, handled before any reply is collected) without that hop, and the
replies wait together in the external requester's list, taken in one go instead of one
``listen(0)`` (a timer, a generator and a scan of the send queue) per reply. With the patched
send loop (`wakeups.deliver_in_order`) the batch does not even pass through the queue when it
is empty: each message goes straight to its actor, in the order the queue would have run them.

This reaches into thespian 4.0.1's ``simpleSystemBase`` (``_pendingSends``, ``_private_lock``,
``_runSends``, ``_realizeWakeups``, ``PendingSend``, the ``External`` actor's ``responses``):
`SimpleDirect.of` checks that they are there and returns None otherwise, and the driver keeps
the ingress path. ``tests/test_thespian_patches.py`` pins what this relies on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from thespian.actors import ActorAddress
from thespian.system import isInternalActorSystemMessage
from thespian.system import simpleSystemBase as _simple  # noqa: N813 - thespian's module name

from persistent_actors import _protocol as p
from persistent_actors._thespian.wakeups import deliver_in_order

__all__ = ["BadAddressError", "SimpleDirect", "distinct_addresses"]

# Each simple-base system numbers the actors created directly under it from 0, and their
# children's addresses extend that number: two systems of one process made the same addresses
# ("/A~a~b"), so refs of different systems compared equal, and a ref of one system told inside
# the other reached that system's actor of the same address, silently. Each system now starts
# its numbering at a stride of its own; the first keeps thespian's addresses.
_ADDRESS_STRIDE = 2**32
_systems = itertools.count()


def distinct_addresses(asys: Any) -> None:
    """Give simple-base actor system `asys` actor addresses no other system of the process has.

    Call it before the system creates its first actor. Does nothing if thespian's internals
    (``_primaryCount``, pinned by ``tests/test_thespian_patches.py``) differ.
    """
    base: Any = getattr(asys, "_systemBase", None)
    if isinstance(getattr(base, "_primaryCount", None), int):
        base._primaryCount = next(_systems) * _ADDRESS_STRIDE  # noqa: SLF001


class BadAddressError(TypeError):
    """`SimpleDirect.tell_all` was given an address that is not an ActorAddress; it sent nothing."""

_BASE_NEEDS = ("_pendingSends", "_private_lock", "_runSends", "_realizeWakeups", "actorRegistry")


class SimpleDirect:
    """Batch sends into, and replies out of, one simple-base actor system; driver thread only."""

    __slots__ = ("_base", "_requester")

    def __init__(self, base: Any, requester: Any) -> None:
        self._base = base
        self._requester = requester

    @classmethod
    def of(cls, asys: Any) -> SimpleDirect | None:
        """The direct path for thespian actor system `asys`, or None if its internals differ."""
        base: Any = getattr(asys, "_systemBase", None)
        base_class: Any = getattr(_simple, "ActorSystemBase", None)
        if base_class is None or not isinstance(base, base_class) or \
                not callable(getattr(_simple, "PendingSend", None)) or \
                not all(hasattr(base, name) for name in _BASE_NEEDS):
            return None
        requester = base.actorRegistry.get("System:ExternalRequester")
        if requester is None or getattr(requester, "address", None) is None:
            return None
        return cls(base, requester)

    def tell_all(self, sends: Sequence[tuple[Any, Any]]) -> None:
        """Send each (address, message) from outside, in order, and run the system until idle.

        As thespian's own ``tell`` does for one message: due wakeups are queued first, so they
        fire between the last call and this one.

        Raises:
            BadAddressError: an address is not an ActorAddress (nothing was sent).

        """
        for address, _ in sends:
            if not isinstance(address, ActorAddress):
                raise BadAddressError(f"not an ActorAddress: {address!r}")
        deliver_in_order(self._base, self._requester.address, sends)

    def pending(self) -> bool:
        """True while messages wait in the send queue (a run stopped at its budget)."""
        return bool(self._base._pendingSends)  # noqa: SLF001

    def run(self) -> None:
        """Queue the due wakeups, then run the send queue (for up to `wakeups.PASS_SECONDS`)."""
        base = self._base
        base._realizeWakeups()  # noqa: SLF001
        base._runSends()  # noqa: SLF001

    def take_replies(self) -> list[Any]:
        """Everything that reached the outside since the last call, in arrival order."""
        responses = getattr(self._requester.instance, "responses", None)
        if not responses:
            return []
        # A Reply (every answer to an ask) is no thespian message: only the rest is tested.
        taken = [r for r in responses
                 if type(r) is p.Reply or not isInternalActorSystemMessage(r)]
        responses.clear()
        return taken
