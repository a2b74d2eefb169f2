"""The peer's domain model; imported only when the eventsourcing library is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteConnectionPool

_original_create_connection = SQLiteConnectionPool._create_connection  # noqa: SLF001


def _create_connection(pool: Any) -> Any:
    connection = _original_create_connection(pool)
    connection._sqlite_conn.execute("PRAGMA synchronous=FULL")  # noqa: SLF001
    return connection


# The library has no setting for the pragma: every pooled connection of this process gets it
# after the library's own set-up, as the peer baseline's --sync FULL does.
setattr(SQLiteConnectionPool, "_create_connection", _create_connection)  # noqa: B010


class Cart(Aggregate):  # type: ignore[misc, unused-ignore]  # Any without the extra
    """The peer baseline's aggregate: items added and removed."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @event("ItemAdded")  # type: ignore[misc, unused-ignore]
    def add_item(self, name: str) -> None:
        """Add an item."""
        self.items.append(name)

    @event("ItemRemoved")  # type: ignore[misc, unused-ignore]
    def remove_item(self, name: str) -> None:
        """Remove an item."""
        self.items.remove(name)


def application(folder: Path) -> Any:
    """An Application on the library's SQLite recorder, in WAL mode, synchronous=FULL."""
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                            "SQLITE_DBNAME": str(folder / "es.db")})
