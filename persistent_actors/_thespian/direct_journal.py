"""The simple base's direct hand-off from a persistent actor to its journal's plugin host.

On thespian's simple base every actor runs on one thread, from one queue of pending sends. A
write request that reaches the `PluginHost` with that queue empty is written at once and
answered (`PluginHost.receiveMessage`); its result is then the only message queued, so the
actor handles it next. That is two thespian messages per write (the request and its result)
with nothing to show for them. `DirectJournal` skips both when the outcome is the same: if no
message waits anywhere (but replies to the outside, which only wait to be collected), no timer
is due, and the actor has sent nothing yet in this receive but such replies (and no message of
its frame follows), the actor calls the host's `write_direct` and
gets the result back; the actor host then handles it as the next message, after the current
one is done (`ActorHost.receiveMessage`), with the same supervision as a delivered one.

Where other work is queued, the request joins the batch the host gathers (`join_batch`)
without a message of its own, and one `Flush`, queued behind that work, writes it with
whatever the work adds: group commit across actors as on the message path, with one message
less per write; its result comes as a message. The request then reaches the host before
messages queued earlier by other actors, whose order against it Akka does not fix either; the
actor's own earlier messages to the journal are deletes of events it already has (a write
never overtakes a replay: an actor writes only once recovered), which commute with the write.
Anything the actor sent earlier in the same receive (other than replies to the outside) sends
the write as a message. On multiproc-tcp, or on thespian internals this does not
know, `DirectJournal.of` returns None and every write is a message.
"""

from __future__ import annotations

from typing import Any

from thespian.system import simpleSystemBase as _simple  # noqa: N813 - thespian's module name
from thespian.system.timing import currentTime

from persistent_actors import _protocol as p
from persistent_actors._thespian import wakeups
from persistent_actors._thespian.plugin_host import PluginHost

__all__ = ["DirectJournal"]

# The address of the simple base's outside (every reply to an external tell or ask goes there):
# a message for it only appends to a list the driver reads once the system is idle, so it
# cannot join a batch or act before a write; one waiting does not stop a direct write.
_OUTSIDE = "System:ExternalRequester"
# Most queued messages looked at to see that all of them are for the outside.
_SCAN = 16


class DirectJournal:
    """Writes of one actor to one journal plugin host in the same simple-base system."""

    __slots__ = ("_key", "_pending", "_registry", "_wakeups")

    def __init__(self, base: Any, journal: Any) -> None:
        self._pending = base._pendingSends  # noqa: SLF001 - see the module docstring
        self._wakeups = base._wakeUps  # noqa: SLF001 - a heap of (deadline, order, entry)
        self._registry = base.actorRegistry
        self._key = journal.actorAddressString

    @classmethod
    def of(cls, actor: Any, journal: Any) -> DirectJournal | None:
        """The direct path from thespian actor `actor` to the plugin host at `journal`.

        None unless `actor` runs on thespian's simple base with the patched send queue and
        timer heap (`wakeups.fast_wakeup_checks`), whose internals this relies on.
        """
        base = getattr(getattr(getattr(actor, "_myRef", None), "_system", None), "_systemBase",
                       None)
        base_class: Any = getattr(_simple, "ActorSystemBase", None)
        send_queue: Any = wakeups._SendQueue  # noqa: SLF001 - our own patch's queue
        if base_class is None or not isinstance(base, base_class) or \
                not isinstance(getattr(base, "_pendingSends", None), send_queue) or \
                not isinstance(getattr(base, "_wakeUps", None), list) or \
                not isinstance(getattr(base, "actorRegistry", None), dict) or \
                not isinstance(getattr(journal, "actorAddressString", None), str) or \
                getattr(getattr(base.actorRegistry.get(_OUTSIDE), "address", None),
                        "addressDetails", None) != _OUTSIDE:
            return None
        # One per journal and system, shared by its actors (it holds nothing of an actor's):
        # one object an actor's first write used to leave alive, 10,000 for 10,000 carts,
        # each pushing the cyclic collector toward its next run.
        shared = base.__dict__.get("_pa_direct_journals")
        if shared is None:
            shared = base._pa_direct_journals = {}  # noqa: SLF001 - our own attribute
        direct: DirectJournal | None = shared.get(journal.actorAddressString)
        if direct is None:
            direct = shared[journal.actorAddressString] = cls(base, journal)
        return direct

    def write(self, request: p.WriteMessages, outbox: dict[Any, Any] | None, requester: Any
              ) -> p.WriteMessagesResult | bool:
        """Hand `request` (from thespian address `requester`) to the plugin host.

        Returns its result if it was written at once (the caller handles it as its next
        message); True if it joined the batch the host gathers (its result comes as a
        message); False if it must be sent as a message. `outbox`: what the caller sent so
        far in the current receive (its frame's outbox, by destination). The caller has
        checked that no message of its frame follows.
        """
        if outbox and any(key != _OUTSIDE for key in outbox):
            return False  # sent before the write: it must reach its target first
        entry = self._registry.get(self._key)
        host = getattr(entry, "_inst", None)  # a registry entry's ``instance``, no property call
        if type(host) is not PluginHost:
            return False
        pending = self._pending
        if wakeups.BATCH_FOLLOWS[0]:  # more of an external batch is handed over after this
            return host.join_batch(request, requester)
        if pending and (len(pending) > _SCAN or any(
                getattr(send.toActor, "addressDetails", None) != _OUTSIDE for send in pending)):
            # Other work queued: it may add writes, so the request joins the batch, which
            # a Flush behind that work writes (group commit, as on the message path).
            return host.join_batch(request, requester)
        heap = self._wakeups
        if heap and heap[0][0] <= currentTime():  # a timer is due first, as thespian's loop
            return host.join_batch(request, requester)
        result = host.write_direct(request)
        if result is None:  # the host gathers a batch already
            return host.join_batch(request, requester)
        return result
