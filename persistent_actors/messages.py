"""Messages the runtime delivers to actors, and the ones users send to control them.

All are frozen dataclasses, so they pickle across processes on the multi-process base and
compare by value. Match them with class patterns, e.g. ``case RecoveryCompleted():``.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import TYPE_CHECKING, Any

from persistent_actors._compact_pickle import compact_all
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria

if TYPE_CHECKING:
    from persistent_actors._actor import ActorRef

__all__ = [
    "DeadLetter",
    "DeleteMessagesFailure",
    "DeleteMessagesSuccess",
    "DeleteSnapshotFailure",
    "DeleteSnapshotSuccess",
    "DeleteSnapshotsFailure",
    "DeleteSnapshotsSuccess",
    "Kill",
    "PoisonPill",
    "RecoveryCompleted",
    "SaveSnapshotFailure",
    "SaveSnapshotSuccess",
    "SnapshotOffer",
    "Status",
    "Terminated",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Kill:
    """Stop the actor at once (Akka's ``Kill``): pending persist handlers do not run.

    ``ref.tell(Kill)`` and ``ref.tell(Kill())`` are the same.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class PoisonPill:
    """Stop the actor after the messages before it.

    A persistent actor first finishes the persist whose handler has not run yet: the pill is
    stashed like a command.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryCompleted:
    """Sent to ``on_recover`` once recovery is done, also for a persistence id with no events."""


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotOffer:
    """Sent to ``on_recover`` with the snapshot recovery starts from.

    If ``on_recover`` calls ``self.unhandled(offer)``, the snapshot is ignored and every event
    is replayed.
    """

    metadata: SnapshotMetadata
    snapshot: Any


@dataclasses.dataclass(frozen=True, slots=True)
class SaveSnapshotSuccess:
    """``save_snapshot`` stored the snapshot described by ``metadata``."""

    metadata: SnapshotMetadata


@dataclasses.dataclass(frozen=True, slots=True)
class SaveSnapshotFailure:
    """``save_snapshot`` failed; ``cause`` says why."""

    metadata: SnapshotMetadata
    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMessagesSuccess:
    """``delete_messages`` removed the events up to ``to_sequence_nr`` (inclusive)."""

    to_sequence_nr: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMessagesFailure:
    """``delete_messages`` failed (or asked beyond ``last_sequence_nr``); nothing was deleted."""

    cause: BaseException
    to_sequence_nr: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshotSuccess:
    """``delete_snapshot`` removed the snapshot described by ``metadata``."""

    metadata: SnapshotMetadata


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshotFailure:
    """``delete_snapshot`` failed; ``cause`` says why."""

    metadata: SnapshotMetadata
    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshotsSuccess:
    """``delete_snapshots`` removed every snapshot matching ``criteria``."""

    criteria: SnapshotSelectionCriteria


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshotsFailure:
    """``delete_snapshots`` failed; ``cause`` says why."""

    criteria: SnapshotSelectionCriteria
    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """Published on the event stream when a message could not be delivered."""

    message: Any
    sender: ActorRef | None
    recipient: ActorRef


@dataclasses.dataclass(frozen=True, slots=True)
class Terminated:
    """The actor that this one watches (``self.context.watch(ref)``) has stopped for good.

    `actor` is the ref that was watched. It arrives once per watch, from no sender, in
    ``on_receive`` (``on_command`` for a persistent actor), never after ``unwatch``.
    """

    actor: ActorRef


class Status:
    """Akka's ``Status``: a reply that says how a requested operation ended.

    Reply ``Status.Failure(error)`` to make the asker's ``ask``/``ask_async`` raise `error`
    (Akka's faulted ask task); an actor receiving it gets it as a message like any other.
    ``Status.Success(value)`` is an ordinary reply: ``ask`` returns it as it is.
    """

    __slots__ = ()

    @dataclasses.dataclass(frozen=True, slots=True)
    class Success:
        """The operation succeeded; `status` is its result (if any)."""

        status: Any = None

    @dataclasses.dataclass(frozen=True, slots=True)
    class Failure:
        """The operation failed with `cause`, an exception; `state` is optional context.

        On multiproc-tcp `cause` travels pickled. One that does not round-trip travels as its
        class, args and attributes, rebuilt without ``__init__``; an argument that cannot
        pickle travels as its repr, an attribute that cannot is dropped. The class itself
        must be importable (not local, not in ``__main__``).
        """

        cause: BaseException
        state: Any = None

        def __post_init__(self) -> None:
            if not isinstance(self.cause, BaseException):
                raise TypeError("Status.Failure(cause): cause must be an exception instance, "
                                f"got {type(self.cause).__name__}")

        def __reduce__(self) -> tuple[Any, ...]:
            # The cause travels as pickle carries it when that round-trips (built-ins keep
            # their fields: an OSError's filename, a SystemExit's code). Otherwise (an
            # exception whose __init__ takes other arguments than it gives BaseException,
            # ``MyError(code, text)``, pickles but would not load) as its class, args and
            # attributes, rebuilt without calling its __init__. What of those cannot travel
            # (a lock, a connection, a lambda the error kept) is left behind: an argument as
            # its repr, an attribute not at all, so the asker still gets the error's class and
            # text instead of waiting for its timeout while the replying actor restarts.
            cause = self.cause
            try:
                pickle.loads(pickle.dumps(cause))  # noqa: S301 - our own bytes, just made
            except Exception:  # noqa: BLE001 - any failure: the rebuild below
                state = {key: value for key, value in
                         (getattr(cause, "__dict__", None) or {}).items()
                         if _travels(value)} or None
                args = tuple(arg if _travels(arg) else repr(arg) for arg in cause.args)
                return (_rebuilt_failure, (type(cause), args, state, self.state))
            return (Status.Failure, (cause, self.state))


def _travels(value: Any) -> bool:
    """True if `value` pickles and loads again (a part of a `Status.Failure`'s cause)."""
    try:
        pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes, just made
    except Exception:  # noqa: BLE001 - any failure: it stays behind
        return False
    return True


def _rebuilt_failure(cls: type[BaseException], args: tuple[Any, ...],
                     state: dict[str, Any] | None, status_state: Any) -> Status.Failure:
    cause = cls.__new__(cls, *args)
    cause.args = args
    if state:
        cause.__dict__.update(state)
    return Status.Failure(cause, status_state)


# Sent between processes on multiproc-tcp: pickle them as (class, field values).
compact_all(globals())
