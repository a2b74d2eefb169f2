"""The ingress actor: where messages from outside the actor system enter it, many at a time.

The external side (`persistent_actors._driver`) sends every message that arrived while it was
busy as one `IngressBatch`; this actor forwards each to its target, in order. On the simple base
the whole batch then runs in one pass, so the persists of concurrent requests reach the journal
together and share one transaction (group commit). It serves the simple base only, as the
fallback: normally the driver skips this actor and puts a batch straight into thespian's send
queue (`simple_direct`), and on multiproc-tcp it sends each destination its own frame
(`outbound`). Replies do not come back this way: they go straight to
the external endpoint by correlation id (an ask's envelope names it in ``reply_to``; other
replies sent here are passed on).
"""

from __future__ import annotations

from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import PoisonMessage

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log
from persistent_actors._thespian.frames import FrameBatching, batched

__all__ = ["Ingress"]


class Ingress(FrameBatching, ThespianActor):  # type: ignore[misc]  # thespian is untyped
    """Forwards each (address, message) of an `IngressBatch`, in order."""

    def __init__(self) -> None:
        super().__init__()
        self._outside: Any = None  # the external endpoint's address (a batch's sender)

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        """Thespian entry point."""
        if isinstance(message, p.IngressBatch):
            self._outside = sender
            for address, item in message.sends:
                if isinstance(item, p.Envelope) and item.correlation_id is not None:
                    # The ask's reply goes straight back outside, not through here.
                    self.send(address, p.Envelope(item.message, item.sender,
                                                  item.correlation_id, sender))
                else:
                    self.send(address, item)
        elif isinstance(message, p.Reply):
            # An answer to a request that came in a batch (the guardian and the plugin actors
            # answer their thespian sender, which was this actor): pass it on outside.
            if self._outside is not None:
                self.send(self._outside, message)
        elif isinstance(message, PoisonMessage):
            # A target failed on a forwarded message twice: thespian returns it to us, the
            # sender. The target's own supervision has dealt with it; nothing waits here.
            log.debug("ingress: message returned as poison: %r", message.poisonMessage)
