"""Helpers shared by the runtime's thespian actors."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from typing import Any

from persistent_actors.errors import MessageNotSerializableError, PersistenceError

log = logging.getLogger("persistent_actors")


@dataclasses.dataclass(frozen=True, slots=True)
class StopRequested:
    """Tells the guardian that a stop (Kill, PoisonPill, stop) was just sent to `address`.

    Why: the host only reports `EntityStopping` when it processes the stop. An ``actor_of``
    under the same name sent right after ``ref.tell(Kill)`` reaches the guardian first (another
    mailbox), found the name taken and failed on multiproc-tcp. Sent by the stopper *after*
    the stop itself, it makes the guardian defer that creation until the old actor exited.
    (Defined here, not in _protocol.py, to keep this fix inside the runtime's thespian layer.)
    """

    address: Any


def check_picklable(message: Any, target: Any) -> None:
    """Raise a clear error if `message` cannot cross a process boundary.

    Thespian's TCP base only reports this later, as a PoisonMessage to the sender (or not at
    all from an actor), so without this check the message silently vanishes.
    """
    try:
        pickle.dumps(message)
    except Exception as e:
        raise MessageNotSerializableError(
            f"message {message!r} to {target} cannot be sent between processes on the "
            f"multiproc-tcp base: {e} (send module-level classes and plain data, not lambdas, "
            "local classes or open resources)"
        ) from e


def portable_error(error: BaseException) -> BaseException:
    """Return `error` if it pickles, else a PersistenceError carrying its text.

    Plugin errors travel back to the actor in a message; an exception holding a connection or
    a lock would fail to pickle and the reply would be lost.
    """
    try:
        pickle.dumps(error)
    except Exception:  # noqa: BLE001 - any pickling failure means: send the text instead
        return PersistenceError(f"{type(error).__name__}: {error}")
    return error
