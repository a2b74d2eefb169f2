"""Helpers shared by the runtime's thespian actors."""

from __future__ import annotations

import logging
import pickle
import pickletools
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
    # A class or function of `__main__` pickles by reference to the script the application
    # runs; an actor process cannot import that (it knows what the script defined before it
    # was forked at most), so the receiving process fails to load the frame and thespian drops
    # it whole, with every other message it carries (another thread's ask included), and
    # without a word. The README says messages must live in importable modules: refuse here.
    main = _main_global(data)
    if main is not None:
        raise MessageNotSerializableError(
            f"message {message!r} to {target} refers to {main}, which is defined in __main__: "
            "another process cannot import it, so it cannot be sent between processes on the "
            "multiproc-tcp base (move the class to an importable module)"
        )
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


_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _main_global(data: bytes) -> str | None:
    """The first `__main__` global (``"__main__.Name"``) the pickle `data` refers to, or None.

    Cheap for the usual message: the opcodes are walked only when the bytes mention
    ``__main__`` at all. The walk follows the memo, since a repeated module name is pickled
    as a memo reference.
    """
    if b"__main__" not in data:
        return None
    memo: dict[Any, Any] = {}
    pushed: list[Any] = []  # what the last opcodes pushed (strings; None for anything else)
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in _STRING_OPS:
            pushed.append(arg)
        elif name in _GET_OPS:
            pushed.append(memo.get(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _PUT_OPS:
            memo[arg] = pushed[-1] if pushed else None
        elif name == "STACK_GLOBAL":
            if len(pushed) >= 2 and pushed[-2] == "__main__":
                return f"__main__.{pushed[-1]}"
            pushed.append(None)
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            if module == "__main__":
                return f"__main__.{qualname}"
            pushed.append(None)
        else:
            pushed.append(None)
        if len(pushed) > 8:
            del pushed[:-2]
    return None


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
