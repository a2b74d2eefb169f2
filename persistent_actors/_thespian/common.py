"""Helpers shared by the runtime's thespian actors."""

from __future__ import annotations

import logging
import pickle
from typing import Any

from thespian.actors import ActorAddress
from thespian.system.transport.IPBase import TCPv4ActorAddress

from persistent_actors._compact_pickle import register_leaf, surely_picklable
from persistent_actors.errors import MessageNotSerializableError, PersistenceError

log = logging.getLogger("persistent_actors")


def check_picklable(message: Any, target: Any) -> None:
    """Raise a clear error if `message` cannot cross a process boundary.

    Thespian's TCP base only reports this later, as a PoisonMessage to the sender (or not at
    all from an actor), so without this check the message silently vanishes. A message made
    of values known to pickle (`surely_picklable`: the runtime's own wrappers around plain
    data, refs and addresses) skips the trial pickle, which cost as much as the frame's.
    """
    if surely_picklable(message):
        return
    try:
        data = pickle.dumps(message)
    except Exception as e:
        raise MessageNotSerializableError(
            f"message {message!r} to {target} cannot be sent between processes on the "
            f"multiproc-tcp base: {e} (send module-level classes and plain data, not lambdas, "
            "local classes or open resources)"
        ) from e
    # Also back: a message that pickles but cannot be unpickled (an exception class whose
    # __init__ takes other arguments than it gives BaseException) would fail in the receiving
    # process, where thespian drops the whole frame with the other messages it carries and
    # the sender retries it, holding up everything behind it to that process.
    try:
        pickle.loads(data)  # noqa: S301 - our own bytes, made just above
    except Exception as e:
        raise MessageNotSerializableError(
            f"message {message!r} to {target} pickles but cannot be unpickled, so it cannot "
            f"be sent between processes on the multiproc-tcp base: {type(e).__name__}: {e} "
            "(an exception class whose __init__ signature differs from its args is the usual "
            "cause: reply it inside Status.Failure, which carries any exception, or define "
            "__reduce__)"
        ) from e


def _tcp_address_pickles(address: Any) -> bool:
    # An ActorAddress pickles its details; a TCPv4ActorAddress's are plain values (family and
    # kind enums, the protocol number, (host, port) tuples).
    return type(address.addressDetails) is TCPv4ActorAddress


register_leaf(ActorAddress, _tcp_address_pickles)


def portable_error(error: BaseException) -> BaseException:
    """Return `error` if it pickles, else a PersistenceError carrying its text.

    Plugin errors travel back to the actor in a message; an exception holding a connection or
    a lock would fail to pickle and the reply would be lost.
    """
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes; a round trip, as
        # `check_picklable` does: an error whose __init__ differs from its args would not load
    except Exception:  # noqa: BLE001 - any pickling failure means: send the text instead
        return PersistenceError(f"{type(error).__name__}: {error}")
    return error
