"""Turns of thespian's TCP loop that wait for nothing, done at once.

Every turn of thespian 4.0.1's ``TCPTransport._runWithExpiry`` rebuilds its watch list, asks
every pending transmit and socket for its deadline, polls, then walks its sockets and intents
again: that per-turn work, not the messages, is most of a multiproc-tcp process's CPU. A cart
process of ``service_async_mp`` turned it about 9 times per request (it receives two messages
and two ACKs, and sends two messages); three kinds of turn wait for nothing:

- After a transmit has sent all its bytes (``_next_XMIT_2``), thespian moves it to the
  "shutdown write" stage, whose step (``_next_XMIT_3``) does nothing but create the ACK buffer
  and move on to waiting for the ACK. Being a sending stage it is registered for writability,
  so the next poll returns at once just to run that step: one turn per message sent. The
  patched ``_next_XMIT_2`` runs ``_next_XMIT_3`` as soon as the data is out.
- Thespian reads a message in two ``recv`` calls: 20 bytes first (enough for the length
  prefix, never more, so no byte of a following message is consumed), then the rest, one per
  turn, so the rest waits for the next poll even when it has already arrived (a message
  is sent in one ``send``): one turn per message received. The patched
  ``_handleReadableIncoming`` reads the rest at once when the length is known, exactly as many
  bytes as thespian's next turn would have asked for; when they are not there yet
  (``EAGAIN``) or the socket reports anything else, it leaves the message to the next turn as
  before, where thespian's own code handles the error or the closed socket.
- The same two reads for the ACK a transmit waits for: thespian's ACK frame is 21 bytes
  (``18>`` and the pickled ``"ACK"``; more with frame authentication), so its last byte took a
  turn of its own after the first 20. The patched ``_next_XMIT_4`` reads the rest of the ACK
  at once when the length is known, with the same fall-back to the next turn.

What arrives is unchanged (the same bytes read in the same order from each socket, each
message handled and acknowledged as before), only sooner. ``tests/test_thespian_patches.py``
pins the steps. Upstream thespian would need the same: read the body in the turn that read
the length, and skip the empty stage.
"""

from __future__ import annotations

import logging
from typing import Any

from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module
from thespian.system.utilis import thesplog

__all__ = ["fewer_turns"]

_PATCHED = False


def _patch_transmit(cls: Any) -> None:
    send_data = cls._next_XMIT_2
    sent = cls._XMITStepShutdownWrite

    def _next_XMIT_2(self: Any, intent: Any) -> Any:  # noqa: N802 - thespian's name
        keep = send_data(self, intent)
        if keep and intent.stage == sent:  # all sent: straight to waiting for the ACK
            return self._next_XMIT_3(intent)
        return keep

    cls._next_XMIT_2 = _next_XMIT_2


def _patch_ack(cls: Any) -> None:
    wait_for_ack = cls._next_XMIT_4
    waiting = cls._XMITStepWaitForAck

    def _next_XMIT_4(self: Any, intent: Any) -> Any:  # noqa: N802 - thespian's name
        keep = wait_for_ack(self, intent)
        while keep and intent.stage == waiting and getattr(intent, "socket", None) is not None:
            ack = getattr(intent, "ackbuf", None)
            if ack is None or getattr(ack, "_size", None) is None or ack.isDone():
                break  # nothing read yet (or a new buffer): the next turn, as before
            try:
                data = intent.socket.recv(ack.remainingAmount())
            except OSError:
                break  # not there yet, or an error: the next turn, as before
            if not data:
                break  # closed: thespian's next turn finds it so
            keep = self._check_XMIT_4_done(intent, data)
        return keep

    cls._next_XMIT_4 = _next_XMIT_4


def _patch_receive(cls: Any) -> None:
    read = cls._handleReadableIncoming

    def _handleReadableIncoming(self: Any, inc: Any,  # noqa: N802 - thespian's name
                                has_exclusive_flag: bool = False) -> Any:
        result = read(self, inc, has_exclusive_flag=has_exclusive_flag)
        while result is inc and inc.socket is not None and \
                getattr(inc._rData, "_size", None) is not None:  # noqa: SLF001 - its buffer
            try:
                data = inc.socket.recv(min(1024000, inc.remainingSize()))
            except OSError:
                return inc  # not there yet, or an error: the next turn, as before
            if not data:
                return inc  # closed: thespian's next turn finds it so
            inc.failCount = 0
            try:
                inc.addData(data)
            except Exception:  # noqa: BLE001 - as thespian: bad data closes the socket
                thesplog("corrupted incoming data; closing socket", level=logging.WARNING)
                inc.close()
                return None
            result = self._addedDataToIncoming(
                inc, has_exclusive_flag=has_exclusive_flag)
        return result

    cls._handleReadableIncoming = _handleReadableIncoming


def fewer_turns() -> None:
    """Patch once per process (idempotent); a no-op on a thespian that differs."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    cls = getattr(_tcp, "TCPTransport", None)
    if cls is None or getattr(cls, "_XMITStepShutdownWrite", None) != 3 or \
            getattr(cls, "_XMITStepWaitForAck", None) != 4 or \
            not all(hasattr(cls, name) for name in (
                "_next_XMIT_3", "_next_XMIT_4", "_check_XMIT_4_done", "_handleReadableIncoming")):
        return  # another thespian version: leave it alone
    _patch_transmit(cls)
    _patch_ack(cls)
    _patch_receive(cls)
    _PATCHED = True
