"""`Move`: one `PluginMoved` applied to the start records and addresses a process holds.

When the process of a plugin or of the event stream dies, the guardian starts another and
tells every host, and the facade, the move (`p.PluginMoved`). Each holder replaces the dead
address wherever it keeps it: its start records (`StartActor`, `StartEntityHost`,
`StartSharedHost`, and the `SystemInfo` inside them), its actors' contexts, its own journal
instances. This module does the replacing, so that the guardian and the three kinds of host
do it alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from persistent_actors import _protocol as p

__all__ = ["Move", "address_key"]

T = TypeVar("T")

# The fields of a start record that hold a plugin's address.
_PLUGIN_FIELDS = ("journal", "snapshot_store")


def address_key(address: Any) -> Any:
    """A hashable key for `address` (thespian addresses are unhashable; their details are)."""
    return getattr(address, "addressDetails", address)


class Move:
    """The replacement of the dead address `moved.old` by `moved.new`.

    A start record shared by many holders (an entity host's one `StartActor` for all its
    entities, one `SystemInfo` for everything) is replaced by one shared new record, not one
    copy per holder.
    """

    def __init__(self, moved: p.PluginMoved) -> None:
        self.old = address_key(moved.old)
        self.new = moved.new
        # id(record) -> (record, its replacement); the entry keeps the record alive, so its id
        # names no other object while this move is applied.
        self._done: dict[int, tuple[Any, Any]] = {}

    def holds_old(self, address: Any) -> bool:
        """True if `address` is the dead one."""
        return address is not None and address_key(address) == self.old

    def address(self, address: T) -> T:
        """`address`, or the new address if it is the dead one."""
        return self.new if self.holds_old(address) else address

    def system(self, info: p.SystemInfo) -> p.SystemInfo:
        """`info`, with the new address if its event stream is the dead one."""
        if not self.holds_old(info.event_stream):
            return info
        replaced: p.SystemInfo = self._replaced(
            info, lambda: dataclasses.replace(info, event_stream=self.new))
        return replaced

    def start(self, start: T) -> T:
        """`start` with the dead address replaced; `start` itself if it holds none.

        `start`: a `StartActor`, `StartEntityHost` or `StartSharedHost`; replaced in its plugin
        fields and its `SystemInfo`.
        """
        def replace() -> Any:
            changes: dict[str, Any] = {
                name: self.new for name in _PLUGIN_FIELDS
                if self.holds_old(getattr(start, name, None))}
            system = self.system(start.system)  # type: ignore[attr-defined]
            if system is not start.system:  # type: ignore[attr-defined]
                changes["system"] = system
            return dataclasses.replace(start, **changes) if changes else start  # type: ignore[type-var]

        return self._replaced(start, replace)  # type: ignore[no-any-return]

    def _replaced(self, record: Any, replace: Any) -> Any:
        done = self._done.get(id(record))
        if done is None:
            done = self._done[id(record)] = (record, replace())
        return done[1]
