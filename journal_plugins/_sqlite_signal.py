"""Commit notifications of SQLite files within one process (the writer tells the readers).

Kept apart from both `sqlite.py` (the writer) and `sqlite_query.py` (the readers), which import
each other's side of it.
"""

from __future__ import annotations

import os

from persistent_actors.event_log import change_signal

__all__ = ["commit_signal_key", "notify_commit"]

_signal_keys: dict[str, str] = {}


def commit_signal_key(path: str | os.PathLike[str]) -> str:
    """The change-signal key of a database file (its real path, so aliases agree)."""
    text = os.fspath(path)
    key = _signal_keys.get(text)
    if key is None:
        key = _signal_keys[text] = "sqlite:" + os.path.realpath(text)
    return key


def notify_commit(path: str | os.PathLike[str]) -> None:
    """Wake this process's live queries on `path`: the writer calls it after each commit."""
    change_signal.notify(commit_signal_key(path))
