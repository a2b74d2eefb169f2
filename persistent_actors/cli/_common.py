"""What every command group shares: opening the configured stores, decoding, printing, progress."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import importlib
import json
import math
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import msgpack

from persistent_actors._config import (
    JOURNAL,
    SNAPSHOT_STORE,
    PluginConfig,
    load_settings,
    resolve_plugin,
)
from persistent_actors._serialization import (
    PLAIN_MANIFEST,
    clip,
    default_serializer,
    unpack_nested,
)
from persistent_actors.errors import PersistentActorsError, SerializationError
from persistent_actors.event_log import EventLog
from persistent_actors.journal import Journal
from persistent_actors.query import standalone_event_log
from persistent_actors.snapshot import SelectedSnapshot, SnapshotSelectionCriteria, SnapshotStore
from persistent_actors.stored import MAX_SEQUENCE_NR, PersistentRepr

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_OK",
    "EXIT_USAGE",
    "TIME_EXPECTED",
    "Progress",
    "Store",
    "UsageError",
    "add_config_option",
    "decode_strict",
    "decode_structure",
    "fail",
    "import_modules",
    "iso",
    "json_number",
    "open_store",
    "progress",
    "snapshots_of",
    "timestamp_problem",
]

PAGE: int = 500

EXIT_OK: Final = 0
EXIT_FINDINGS: Final = 1  # verify found problems, copy's counts differ
EXIT_USAGE: Final = 2  # a user mistake, printed as one line


class UsageError(PersistentActorsError):
    """A mistake in the command line or its inputs; printed as one line, exit status 2."""


def fail(error: BaseException) -> None:
    """Print `error` as the one line a user mistake gets."""
    text = str(error) or type(error).__name__
    print(f"persistent-actors: error: {' '.join(text.split())}", file=sys.stderr)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config`` on a sub-command too (the global one stays the default when it is absent)."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="the TOML config (also accepted before the group name)")


def import_modules(names: list[str] | None) -> None:
    """Import the modules that register the application's event classes (``--import``).

    From the working directory too, as ``python -m`` would: the console script's path holds
    only its own install, so ``--import shop.events`` run next to ``shop/`` found nothing.
    """
    if names and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names or ():
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UsageError(f"--import {name}: cannot import it: {e}") from e
        except (Exception, SystemExit) as e:
            # The module was found but failed while it ran (a bug, a SyntaxError, a missing
            # environment variable, a sys.exit): the user's mistake to fix, not a traceback.
            what = f"sys.exit({e.code!r})" if isinstance(e, SystemExit) else \
                f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise UsageError(f"--import {name}: importing it failed with {what} (expected a "
                             "module that imports cleanly and registers the event "
                             "classes)") from e


# -- opening the stores a config names ---------------------------------------------------------
@dataclasses.dataclass(slots=True)
class Store:
    """A configured journal (started), its read-side log and its snapshot store (started)."""

    name: str
    journal: Journal
    log: EventLog
    snapshots: SnapshotStore
    journal_config: PluginConfig

    async def persistence_ids(self) -> list[str]:
        """Every persistence id with stored events (deleted ones too), in first-event order."""
        ids: list[str] = []
        after = 0
        bound = await self.log.highest_ordering()
        while after < bound:
            page = await self.log.fetch_persistence_ids(after, PAGE, max_ordering=bound)
            ids.extend(pid for _, pid in page.ids)
            if page.scanned_to <= after:
                break
            after = page.scanned_to
        return ids

    async def events(self, persistence_id: str, from_nr: int = 1,
                     to_nr: int = MAX_SEQUENCE_NR) -> AsyncIterator[PersistentRepr]:
        """The id's stored events in sequence order, through the journal's replay."""
        async for repr_ in self.journal.replay_messages(persistence_id, from_nr, to_nr,
                                                        MAX_SEQUENCE_NR):
            yield repr_


def _check_files_exist(config: PluginConfig, what: str) -> None:
    # A plugin that stores in a file creates it when missing: for reading, that hides a typo.
    path = config.settings.get("path")
    if isinstance(path, str) and path and not Path(path).exists():
        raise UsageError(f"{what} database file {path!r} does not exist "
                         f"(config key persistence.{config.kind}.path)")


async def _check_store_exists(plugin: Any, config: PluginConfig, what: str) -> None:
    # A server-backed plugin creates its tables on start (PostgreSQL: the schema too); one
    # that can say whether they are there (``missing_store``) is asked first.
    missing = getattr(plugin, "missing_store", None)
    if missing is None:
        return
    reason = await missing()
    if reason is not None:
        raise UsageError(f"{what} {config.plugin_id!r} does not exist: {reason} (config "
                         f"[persistence.{config.kind}])")


@contextlib.asynccontextmanager
async def open_store(config_path: str | None, *, plugin_id: str | None = None,
                     must_exist: bool = True, name: str = "") -> AsyncIterator[Store]:
    """Start the journal and snapshot store `config_path` configures, as `ActorSystem` would.

    `config_path` None means ``$PERSISTENT_ACTORS_CONFIG``. With `must_exist`, a file-backed
    store whose file is missing is a `UsageError` instead of a new empty database.
    """
    if config_path is not None and not Path(config_path).is_file():
        raise UsageError(f"config file {config_path!r} does not exist")
    settings = load_settings(config_path)
    journal_config = settings.plugin(JOURNAL, plugin_id)
    snapshot_config = settings.plugin(SNAPSHOT_STORE, plugin_id if plugin_id in
                                      settings.snapshot_stores else None)
    if must_exist:
        _check_files_exist(journal_config, "journal")
        _check_files_exist(snapshot_config, "snapshot store")
    journal = resolve_plugin(JOURNAL, journal_config.spec)(journal_config.settings)
    snapshots = resolve_plugin(SNAPSHOT_STORE, snapshot_config.spec)(snapshot_config.settings)
    if must_exist:
        await _check_store_exists(journal, journal_config, "journal")
        await _check_store_exists(snapshots, snapshot_config, "snapshot store")
    await journal.start()
    try:
        await snapshots.start()
        try:
            log = standalone_event_log(journal_config)
            if log is None:
                # Its events live in the memory of an actor system's process (in-memory
                # journal), or it has no read side: another process cannot read them.
                raise UsageError(
                    f"journal plugin {journal_config.spec!r} (journal "
                    f"{journal_config.plugin_id!r}) cannot be read from another process; the "
                    "CLI works on stores such as sqlite")
            try:
                yield Store(name or str(config_path), journal, log, snapshots, journal_config)
            finally:
                await log.close()
        finally:
            await snapshots.close()
    finally:
        await journal.close()


async def snapshots_of(store: SnapshotStore, persistence_id: str) -> list[SelectedSnapshot]:
    """Every snapshot of `persistence_id`, oldest first, found through `SnapshotStore.load`."""
    found: list[SelectedSnapshot] = []
    criteria = SnapshotSelectionCriteria.latest()
    while (snapshot := await store.load(persistence_id, criteria)) is not None:
        found.append(snapshot)
        if snapshot.metadata.sequence_nr == 0:
            break
        criteria = SnapshotSelectionCriteria(max_sequence_nr=snapshot.metadata.sequence_nr - 1)
    found.reverse()
    return found


# -- decoding ----------------------------------------------------------------------------------
def decode_strict(manifest: str, payload: bytes, *, rebuild: bool = False) -> Any:
    """Decode a stored payload; raise `SerializationError` where replay would fail.

    With `rebuild` (``verify --import``: the application's classes are registered), exactly as
    replay does: a manifest, top-level or nested, that no module registered is an error, as it
    is for replay. Without it only the structure is checked (msgpack, the extension codes): the
    CLI does not know the application's classes, so an object of a class it does not know, at
    the top or nested in plain data, is decoded as structure; a manifest registered in this
    process (the library's own) is still rebuilt.
    """
    if rebuild:
        return default_serializer.from_binary(manifest, payload)
    try:
        structure = _unpack(payload)
    except SerializationError:
        raise
    except Exception as e:  # worded as the serializer words it
        raise SerializationError(f"corrupted payload for manifest {clip(repr(manifest))}: "
                                 f"{clip(str(e))}") from e
    if manifest != PLAIN_MANIFEST and default_serializer.class_of(manifest) is not None:
        return default_serializer.from_binary(manifest, payload)
    return structure


def _structure_hook(code: int, data: bytes) -> Any:
    # The serializer's extension codes (persistent_actors._serialization), rendered as JSON-able
    # structure: the CLI shows what is stored without the application's classes.
    match code:
        case 1:
            manifest, state = unpack_nested(data, _structure_hook)
            return {"@manifest": manifest, "state": state}
        case 2 | 6 | 7:
            return unpack_nested(data, _structure_hook)
        case 3 | 8 | 10:  # ISO text; a datetime or time with fold=1 as [text, 1]
            stored = unpack_nested(data, _structure_hook)
            return str(stored[0] if isinstance(stored, list) and stored else stored)
        case 9:  # a timedelta: [days, seconds, microseconds]
            days, seconds, microseconds = unpack_nested(data, _structure_hook)
            return str(dt.timedelta(days, seconds, microseconds))
        case 4:
            return str(uuid.UUID(bytes=data))
        case 5:
            return str(decimal.Decimal(data.decode()))
    raise SerializationError(f"unknown msgpack extension code {code}")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_structure_hook, raw=False, strict_map_key=False)


def decode_structure(payload: bytes) -> Any:
    """The stored state as JSON-able structure (registered objects as ``{"@manifest": ...}``)."""
    try:
        return _unpack(payload)
    except SerializationError:
        raise
    except Exception as e:
        raise SerializationError(f"payload is not valid msgpack: {e}") from e


def jsonable(value: Any) -> Any:
    """`value` made JSON-able: bytes as base64 strings, unknown objects by repr."""
    match value:
        case None | bool() | int() | float() | str():
            return value
        case bytes():
            return {"@bytes": base64.b64encode(value).decode()}
        case dict():
            return {str(k): jsonable(v) for k, v in value.items()}
        case list() | tuple() | set() | frozenset():
            return [jsonable(v) for v in value]
        case _ if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {"@type": type(value).__qualname__,
                    **{f.name: jsonable(getattr(value, f.name))
                       for f in dataclasses.fields(value)}}
    return repr(value)


TIME_EXPECTED: Final = "seconds since the epoch: a finite number within years 1..9999 (UTC)"


def timestamp_problem(timestamp: float) -> str | None:
    """Why `timestamp` is no time a stored event can have (None: it is one). See `TIME_EXPECTED`.

    JSON gives ``1e400`` as infinity and accepts ``NaN``; a plugin may store either, or a number
    beyond the dates Python has (which every display of it would fail on).
    """
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        return f"not a number ({type(timestamp).__name__})"
    if not math.isfinite(timestamp):
        return "not a finite number"
    try:
        dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return "beyond the years 1..9999"
    return None


def iso(timestamp: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time with milliseconds.

    A stored value that is no time (see `timestamp_problem`) is shown as itself, never raised:
    the CLI must be able to show what is stored.
    """
    try:
        moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return f"(timestamp {timestamp!r}: not a time)"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_number(value: float) -> float | str:
    """`value` for strict JSON: a non-finite float as its text ('inf', 'nan').

    Not as the tokens Infinity and NaN, which JSON parsers other than Python's refuse.
    """
    return value if not isinstance(value, float) or math.isfinite(value) else repr(value)


def event_record(repr_: PersistentRepr) -> dict[str, Any]:
    """One event as the ``--json`` output shows it (the event decoded as structure)."""
    return {"persistence_id": repr_.persistence_id, "sequence_nr": repr_.sequence_nr,
            "timestamp": json_number(repr_.timestamp), "manifest": repr_.manifest,
            "tags": list(repr_.tags),
            "writer_uuid": repr_.writer_uuid,
            "event": jsonable(decode_structure(repr_.payload))}


def event_line(repr_: PersistentRepr) -> str:
    """One event as a readable line."""
    event = json.dumps(jsonable(decode_structure(repr_.payload)), ensure_ascii=False,
                       separators=(", ", ": "))
    tags = f"  tags={','.join(repr_.tags)}" if repr_.tags else ""
    return (f"{repr_.persistence_id}  #{repr_.sequence_nr}  {iso(repr_.timestamp)}  "
            f"{repr_.manifest or '(plain)'}  {event}{tags}")


# -- progress ------------------------------------------------------------------------------------
class Progress(Protocol):
    """The part of a progress bar the commands use."""

    def update(self, n: int) -> Any:
        """Advance by `n`."""


class _NoProgress:
    def update(self, n: int) -> None:
        del n


@contextlib.contextmanager
def progress(total: int, description: str) -> Iterator[Progress]:
    """A tqdm bar on stderr when the ``progress`` extra is installed and stderr is a terminal."""
    if not sys.stderr.isatty():
        yield _NoProgress()
        return
    try:
        from tqdm import tqdm  # noqa: PLC0415 - optional extra, only for a terminal
    except ImportError:
        yield _NoProgress()
        return
    with tqdm(total=total, desc=description, unit="ev", file=sys.stderr) as bar:
        yield bar
