"""``persistent-actors journal ...``: look at, check, export, import and copy stored events.

Everything goes through the plugin API (`Journal`, `SnapshotStore`, the read side's
`EventLog`), so the commands work on every plugin that offers a read side, and ``copy`` moves
events between any two of them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import stat
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

from persistent_actors.adapters import Tagged
from persistent_actors.cli._common import (
    EXIT_FINDINGS,
    EXIT_OK,
    PAGE,
    TIME_EXPECTED,
    Store,
    UsageError,
    add_config_option,
    decode_strict,
    event_line,
    event_record,
    import_modules,
    iso,
    open_store,
    progress,
    snapshots_of,
    timestamp_problem,
)
from persistent_actors.errors import SerializationError
from persistent_actors.journal import Journal
from persistent_actors.query import _check_pid, _checked_tag
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)
from persistent_actors.stored import MAX_SEQUENCE_NR, AtomicWrite, PersistentRepr

__all__ = ["EXPORT_FORMAT", "copy_journal", "register"]

EXPORT_FORMAT: Final = "persistent-actors-export"
EXPORT_VERSION: Final = 1
# Events per write_messages call when importing or copying: one transaction each on SQL stores.
DEFAULT_BATCH: Final = 500


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``journal`` sub-commands."""
    def add(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_config_option(sub)
        sub.add_argument("--journal", metavar="ID", dest="plugin_id",
                         help="a journal from [persistence.journals.ID] (default: the default one)")
        sub.set_defaults(handler=handler)
        return sub

    sub = add("ids", "persistence ids with their highest sequence number and event count", _ids)
    sub.add_argument("--json", action="store_true", help="one JSON object per line")

    sub = add("events", "the stored events of one persistence id", _events)
    sub.add_argument("persistence_id")
    sub.add_argument("--from", dest="from_nr", type=_nr, default=1, metavar="N")
    sub.add_argument("--to", dest="to_nr", type=_nr, default=MAX_SEQUENCE_NR, metavar="M")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")

    sub = add("tail", "print events as they are stored (all, or one tag); Ctrl-C stops", _tail)
    sub.add_argument("--tag", help="only events stored with this tag")
    sub.add_argument("--from-start", action="store_true",
                     help="print the stored events first, then follow")
    sub.add_argument("--limit", type=_count, metavar="N", help="stop after N events")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")

    sub = add("verify", "check every event, sequence, snapshot and the database itself", _verify)
    sub.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                     help="import a module that registers event classes (repeatable): every "
                          "event and snapshot is then rebuilt as replay would, and a manifest "
                          "no imported module registers is a finding; without it only the "
                          "structure is checked")

    sub = add("export", "write every event and snapshot as JSON lines", _export)
    sub.add_argument("--output", "-o", metavar="FILE", help="default: standard output")

    sub = add("import", "store the events and snapshots of an export", _import)
    sub.add_argument("input", metavar="FILE", help="an export ('-': standard input)")

    sub = add("copy", "copy every event and snapshot to the stores of another config", _copy)
    sub.add_argument("--to", dest="target", required=True, metavar="OTHER.toml")
    sub.add_argument("--to-journal", metavar="ID", help="a journal id of the other config")
    sub.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH, metavar="N",
                     help=f"events per write (default {DEFAULT_BATCH}); one atomic write is "
                          "never split, so a write may hold more")
    sub.add_argument("--max-events", type=_positive, metavar="N",
                     help="stop after N events in this run, at the end of an atomic write "
                          "(one atomic write is copied whole, so it may take the count past N); "
                          "run again to continue")

    sub = add("stats", "events, ids, tags, bytes, oldest and newest event", _stats)
    sub.add_argument("--json", action="store_true", help="one JSON object")


def _nr(text: str, what: str = "a sequence number") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    return _nr(text, "a number of events")


def _positive(text: str) -> int:
    value = _nr(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


def _print(line: str) -> None:
    print(line, flush=True)


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


# -- ids, events, tail, stats --------------------------------------------------------------------
def _ids(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            for pid in await store.persistence_ids():
                highest = await store.journal.read_highest_sequence_nr(pid, 0)
                count = 0
                async for _ in store.events(pid):
                    count += 1
                if args.json:
                    _print(_json_line({"persistence_id": pid, "highest_sequence_nr": highest,
                                       "events": count}))
                else:
                    _print(f"{pid}  highest={highest}  events={count}")

    asyncio.run(run())
    return EXIT_OK


def _events(args: argparse.Namespace) -> int:
    # The read side's rule, on every plugin: an id no event can have is a mistake, said as one
    # (SQLite failed with an encoding error of its own, another plugin may find nothing).
    _check_pid(args.persistence_id)

    async def run() -> None:
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            shown = 0
            async for repr_ in store.events(args.persistence_id, args.from_nr, args.to_nr):
                _print(_describe(repr_, as_json=args.json))
                shown += 1
            if not shown:  # a typo in the id should not look like an empty history
                highest = await store.journal.read_highest_sequence_nr(args.persistence_id, 0)
                print(f"no stored events of {args.persistence_id!r} in that range (highest "
                      f"sequence number: {highest})", file=sys.stderr)

    asyncio.run(run())
    return EXIT_OK


def _describe(repr_: PersistentRepr, *, as_json: bool) -> str:
    try:
        return _json_line(event_record(repr_)) if as_json else event_line(repr_)
    except SerializationError as e:
        raise SerializationError(f"event {repr_.sequence_nr} of {repr_.persistence_id!r} "
                                 f"cannot be decoded: {e}") from e


def _tail(args: argparse.Namespace) -> int:
    if args.tag is not None:
        # A tag no event can have ('' or a lone surrogate) followed the journal for ever.
        _checked_tag(args.tag)

    async def run() -> None:
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            log = store.log
            after = 0 if args.from_start else await log.highest_ordering()
            printed = 0
            while args.limit is None or printed < args.limit:
                page = await log.fetch_events(after, PAGE, tag=args.tag)
                for stored in page.events:
                    _print(_describe(stored.event, as_json=args.json))
                    printed += 1
                    if args.limit is not None and printed >= args.limit:
                        return
                after = max(after, page.scanned_to)
                if after >= page.highest_ordering:
                    await log.wait_for_change(page.highest_ordering, 1.0)

    asyncio.run(run())
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            events = size = 0
            ids: set[str] = set()
            tags: Counter[str] = Counter()
            oldest = newest = None
            after = 0
            bound = await store.log.highest_ordering()
            while after < bound:
                page = await store.log.fetch_events(after, PAGE, max_ordering=bound)
                for stored in page.events:
                    repr_ = stored.event
                    events += 1
                    size += len(repr_.payload)
                    ids.add(repr_.persistence_id)
                    tags.update(repr_.tags)
                    oldest = repr_.timestamp if oldest is None else min(oldest, repr_.timestamp)
                    newest = repr_.timestamp if newest is None else max(newest, repr_.timestamp)
                if page.scanned_to <= after:
                    break
                after = page.scanned_to
            snapshots = 0
            all_ids = await store.persistence_ids()
            for pid in all_ids:
                snapshots += len(await snapshots_of(store.snapshots, pid))
            path = store.journal_config.settings.get("path")
            files = [Path(str(path) + suffix) for suffix in ("", "-wal")] if path else []
            on_disk = sum(f.stat().st_size for f in files if f.is_file()) if files else None
            return {"events": events, "persistence_ids": len(all_ids),
                    "ids_with_events": len(ids), "payload_bytes": size,
                    "file_bytes": on_disk,
                    "tags": dict(sorted(tags.items())), "snapshots": snapshots,
                    "oldest": iso(oldest) if oldest is not None else None,
                    "newest": iso(newest) if newest is not None else None}

    stats = asyncio.run(run())
    if args.json:
        _print(_json_line(stats))
        return EXIT_OK
    for key, value in stats.items():
        shown = (", ".join(f"{tag}={n}" for tag, n in value.items()) or "-") if key == "tags" \
            else value
        _print(f"{key + ':':<17}{shown if shown is not None else '-'}")
    return EXIT_OK


# -- verify --------------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    import_modules(args.imports)

    async def run() -> tuple[list[str], int, int]:
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            findings: list[str] = []
            ids = await store.persistence_ids()
            checked = 0
            for pid in ids:
                checked += await _verify_id(store, pid, findings,
                                            rebuild=bool(args.imports))
            findings.extend(f"database: {problem}"
                            for problem in await store.journal.integrity_check())
            return findings, len(ids), checked

    findings, ids, events = asyncio.run(run())
    for finding in findings:
        _print(finding)
    verdict = f"{len(findings)} finding(s)" if findings else "ok"
    print(f"verified {events} events of {ids} persistence ids: {verdict}", file=sys.stderr)
    return EXIT_FINDINGS if findings else EXIT_OK


async def _verify_id(store: Store, pid: str, findings: list[str], *,
                     rebuild: bool) -> int:
    """Check one id's events and snapshots, appending one line per problem; return the count.

    With `rebuild` (``--import``), every payload must decode as replay decodes it: an
    unregistered manifest is a finding (replay would fail on it).
    """
    highest = await store.journal.read_highest_sequence_nr(pid, 0)
    previous: PersistentRepr | None = None
    count = 0
    async for repr_ in store.events(pid):
        count += 1
        if (problem := timestamp_problem(repr_.timestamp)) is not None:
            findings.append(f"{pid} #{repr_.sequence_nr}: timestamp {repr_.timestamp!r} is "
                            f"{problem} (expected {TIME_EXPECTED})")
        try:
            decode_strict(repr_.manifest, repr_.payload, rebuild=rebuild)
        except SerializationError as e:
            findings.append(f"{pid} #{repr_.sequence_nr}: undecodable event: {e}")
        if previous is not None and repr_.sequence_nr != previous.sequence_nr + 1:
            # Events of one persist_all share writer and timestamp: a hole between two of them
            # means an atomic write was torn, not just that events went missing.
            torn = (repr_.writer_uuid, repr_.timestamp) == (previous.writer_uuid,
                                                            previous.timestamp)
            what = "torn atomic write" if torn else "sequence gap"
            findings.append(f"{pid} #{repr_.sequence_nr}: {what}: events "
                            f"{previous.sequence_nr + 1}..{repr_.sequence_nr - 1} are missing")
        previous = repr_
    if previous is not None and previous.sequence_nr != highest:
        findings.append(f"{pid} #{previous.sequence_nr}: events {previous.sequence_nr + 1}.."
                        f"{highest} are missing (highest sequence number is {highest})")
    for snapshot in await snapshots_of(store.snapshots, pid):
        nr = snapshot.metadata.sequence_nr
        if (problem := timestamp_problem(snapshot.metadata.timestamp)) is not None:
            findings.append(f"{pid} snapshot #{nr}: timestamp {snapshot.metadata.timestamp!r} "
                            f"is {problem} (expected {TIME_EXPECTED})")
        try:
            decode_strict(snapshot.manifest, snapshot.payload, rebuild=rebuild)
        except SerializationError as e:
            findings.append(f"{pid} snapshot #{nr}: undecodable snapshot: {e}")
        if nr > highest:
            findings.append(f"{pid} snapshot #{nr}: refers to sequence number {nr}, beyond the "
                            f"highest stored ({highest})")
    return count


# -- export and import ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _event_export(repr_: PersistentRepr) -> dict[str, Any]:
    return {"type": "event", "persistence_id": repr_.persistence_id,
            "sequence_nr": repr_.sequence_nr, "manifest": repr_.manifest,
            "payload": _b64(repr_.payload), "writer_uuid": repr_.writer_uuid,
            "timestamp": repr_.timestamp, "tags": list(repr_.tags)}


def _snapshot_export(snapshot: SelectedSnapshot) -> dict[str, Any]:
    md = snapshot.metadata
    return {"type": "snapshot", "persistence_id": md.persistence_id,
            "sequence_nr": md.sequence_nr, "timestamp": md.timestamp,
            "manifest": snapshot.manifest, "payload": _b64(snapshot.payload)}


async def _export_records(store: Store) -> AsyncIterator[dict[str, Any]]:
    yield {"type": "header", "format": EXPORT_FORMAT, "version": EXPORT_VERSION}
    after = 0
    bound = await store.log.highest_ordering()
    while after < bound:  # events in the journal's global order, so an import keeps it
        page = await store.log.fetch_events(after, PAGE, max_ordering=bound)
        for stored in page.events:
            yield _event_export(stored.event)
        if page.scanned_to <= after:
            break
        after = page.scanned_to
    for pid in await store.persistence_ids():
        for snapshot in await snapshots_of(store.snapshots, pid):
            yield _snapshot_export(snapshot)


def _export(args: argparse.Namespace) -> int:
    async def run(out: TextIO) -> int:
        count = 0
        async with open_store(args.config, plugin_id=args.plugin_id) as store:
            async for record in _export_records(store):
                out.write(_json_line(record) + "\n")
                count += 1
        return count

    if args.output is None:
        asyncio.run(run(sys.stdout))
        return EXIT_OK
    count = _write_output(args.output, lambda out: asyncio.run(run(out)))
    print(f"exported {count - 1} records to {args.output!r}", file=sys.stderr)
    return EXIT_OK


def _write_output(output: str, write: Callable[[TextIO], int]) -> int:
    """Call `write` with `output` open for writing; return what it returns.

    A regular file (or a new one) gets a complete export or none: `write` fills
    ``FILE.partial``, renamed over FILE at the end (a failure leaves FILE as it was). A symlink
    is followed, so the file it points to is replaced and the link stays. Anything else (a
    FIFO, a device, /dev/stdout even when it is a regular file) is written directly: renaming
    over it would replace it.
    """
    shown = repr(output)
    try:
        mode: int | None = os.stat(output).st_mode  # through symlinks, /dev/stdout's too
    except FileNotFoundError:
        mode = None  # a new file, or a symlink to one
    except OSError as e:
        raise UsageError(f"cannot write the export to {shown}: {e.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"cannot write the export to {shown}: it is a directory (expected a "
                         "file name)")
    open_file = _names_an_open_file(output)
    if mode is not None and (not stat.S_ISREG(mode) or open_file):
        try:  # appending to an open file: `-o /dev/stdout >> log` must not truncate the log
            out = Path(output).open("a" if open_file else "w",  # noqa: SIM115 - closed below
                                    encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the export to {shown}: {e.strerror}") from None
        with out:
            return write(out)
    target = Path(os.path.realpath(output))  # a symlink's file; the same path otherwise
    if not target.parent.is_dir():
        given = Path(output).parent
        where = f"directory {str(given)!r}" if not given.is_dir() else \
            f"it is a symlink to {str(target)!r}, whose directory"
        raise UsageError(f"cannot write the export to {shown}: {where} does not exist")
    tmp = target.with_name(target.name + ".partial")
    try:
        out = tmp.open("w", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write the export to {shown}: cannot create {str(tmp)!r} "
                         f"next to it: {e.strerror}") from None
    try:
        with out:
            count = write(out)
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))  # the file it replaces keeps its permissions
        tmp.replace(target)  # a complete export or none: never a silently truncated file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _names_an_open_file(path: str) -> bool:
    """Whether `path` (through its symlinks) is /dev/stdout, /dev/fd/N or /proc/PID/fd/N.

    Such a name is a process's open file, not an entry of a directory: ``-o /dev/stdout >>
    log`` writes to the log, where a rename would replace the log by the export.
    """
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        if current.startswith(("/proc/", "/dev/fd/")):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current),
                                                os.readlink(current)))
    return False


def _read_export(lines: Iterable[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of an export after its header, the first non-blank line (blank lines skip)."""
    not_export = f"{source} is not a persistent-actors export (version {EXPORT_VERSION})"
    header = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{source} line {number}: not JSON: {e}") from None
        if not isinstance(record, dict):
            raise UsageError(f"{source} line {number}: expected a JSON object")
        if not header:
            if record.get("format") != EXPORT_FORMAT or record.get("version") != EXPORT_VERSION:
                first = "its first line" if number == 1 else \
                    f"its first non-blank line (line {number})"
                raise UsageError(f"{not_export}: {first} is {line.strip()[:80]!r}")
            header = True
            continue
        yield number, record
    if not header:
        raise UsageError(f"{not_export}: it has no header line (the file is empty or blank)")


def _repr_from(record: dict[str, Any], where: str) -> PersistentRepr:
    try:
        return PersistentRepr(
            persistence_id=_persistence_id(record),
            sequence_nr=_sequence_nr(record, lowest=1),
            manifest=_typed(record, "manifest", str),
            payload=base64.b64decode(_typed(record, "payload", str), validate=True),
            writer_uuid=_typed(record, "writer_uuid", str),
            timestamp=_timestamp(record),
            tags=_tags(_typed(record, "tags", list)))
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise UsageError(f"{where}: bad event record: {e}") from None


def _tags(tags: list[Any]) -> tuple[str, ...]:
    Tagged(None, tags)  # the runtime's rule: raises unless every tag is a non-empty str
    return tuple(tags)  # as exported: an import stores what was stored


def _persistence_id(record: dict[str, Any]) -> str:
    pid: str = _typed(record, "persistence_id", str)
    _check_pid(pid)  # the read side's rule: a non-empty str
    return pid


def _sequence_nr(record: dict[str, Any], *, lowest: int) -> int:
    """The record's sequence number: from 1 for events, 0 for snapshots (none persisted yet)."""
    nr: int = _typed(record, "sequence_nr", int)
    if not lowest <= nr <= MAX_SEQUENCE_NR:
        raise ValueError(f"sequence_nr must be an int in [{lowest}, 2**63-1], got {nr!r}")
    return nr


def _snapshot_from(record: dict[str, Any], where: str) -> SelectedSnapshot:
    try:
        md = SnapshotMetadata(_persistence_id(record), _sequence_nr(record, lowest=0),
                              _timestamp(record))
        return SelectedSnapshot(md, _typed(record, "manifest", str),
                                base64.b64decode(_typed(record, "payload", str), validate=True))
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise UsageError(f"{where}: bad snapshot record: {e}") from None


def _timestamp(record: dict[str, Any]) -> float:
    """The record's timestamp: a time every command can show (not 1e400, NaN, year 10000)."""
    value = _typed(record, "timestamp", (int, float))
    try:
        timestamp = float(value)
    except OverflowError:  # an int beyond floats: 10**400
        timestamp = float("inf")
    if timestamp_problem(timestamp) is not None:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
        raise ValueError(f"timestamp must be {TIME_EXPECTED}, got {shown}")
    return timestamp


def _typed(record: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in record:
        # A KeyError printed as "bad event record: 'persistence_id'": named, but not as missing.
        raise ValueError(f"field {key!r} is missing")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key} has the wrong type ({type(value).__name__})")
    return value


class _Writer:
    """Writes events to a journal in batches of atomic writes, skipping what it already has.

    Consecutive events of one id with the same writer and timestamp were stored by one
    `persist_all` (one atomic write) and go to the target as one atomic write again, in one
    `write_messages` call: a batch holds whole groups only, so it may exceed `batch_size`.
    """

    def __init__(self, journal: Journal, batch_size: int) -> None:
        self.journal = journal
        self.batch_size = batch_size
        self.highest: dict[str, int] = {}
        self.group: list[PersistentRepr] = []  # the open atomic write: more may belong to it
        self.writes: list[AtomicWrite] = []  # complete atomic writes, not yet written
        self.queued = 0  # events in `writes`
        self.written = 0
        self.skipped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet written (the open group included)."""
        return self.queued + len(self.group)

    def continues_group(self, repr_: PersistentRepr) -> bool:
        """Whether `repr_` belongs to the open atomic write (same id, writer and timestamp)."""
        last = self.group[-1] if self.group else None
        return last is not None and last.persistence_id == repr_.persistence_id \
            and last.sequence_nr + 1 == repr_.sequence_nr \
            and (last.writer_uuid, last.timestamp) == (repr_.writer_uuid, repr_.timestamp)

    async def add(self, repr_: PersistentRepr) -> int:
        """Queue one event; return how many events were written by this call."""
        pid = repr_.persistence_id
        if pid not in self.highest:
            self.highest[pid] = await self.journal.read_highest_sequence_nr(pid, 0)
        if repr_.sequence_nr <= self.highest[pid]:
            self.skipped += 1  # stored by an earlier, interrupted run
            return 0
        written = 0
        if self.group and not self.continues_group(repr_):
            self._close_group()
            if self.queued >= self.batch_size:  # whole groups only: never split one
                written = await self._write()
        self.group.append(repr_)
        return written

    def _close_group(self) -> None:
        if self.group:
            self.writes.append(AtomicWrite(tuple(self.group)))
            self.queued += len(self.group)
            self.group = []

    async def flush(self) -> int:
        """Write everything queued, the open group as complete; return the events written."""
        self._close_group()
        return await self._write()

    async def _write(self) -> int:
        if not self.writes:
            return 0
        writes, self.writes = self.writes, []
        results = await self.journal.write_messages(writes)
        for write, result in zip(writes, results, strict=True):
            if result is not None:
                raise UsageError(f"the target journal rejected events {write.lowest_sequence_nr}"
                                 f"..{write.highest_sequence_nr} of {write.persistence_id!r}: "
                                 f"{result}")
        written, self.queued = self.queued, 0
        self.written += written
        return written


async def _save_snapshot(store: SnapshotStore, snapshot: SelectedSnapshot) -> bool:
    md = snapshot.metadata
    there = await store.load(md.persistence_id, SnapshotSelectionCriteria(
        max_sequence_nr=md.sequence_nr, min_sequence_nr=md.sequence_nr))
    if there is not None and (there.manifest, there.payload) == (snapshot.manifest,
                                                                 snapshot.payload):
        return False
    await store.save(md, snapshot.manifest, snapshot.payload)
    return True


def _import(args: argparse.Namespace) -> int:
    source = "standard input" if args.input == "-" else repr(args.input)
    if args.input != "-" and not Path(args.input).is_file():
        raise UsageError(f"export file {args.input!r} does not exist")

    async def run(lines: Iterable[str]) -> tuple[int, int, int]:
        async with open_store(args.config, plugin_id=args.plugin_id, must_exist=False) as store:
            writer = _Writer(store.journal, DEFAULT_BATCH)
            snapshots = 0
            for number, record in _read_export(lines, source):
                where = f"{source} line {number}"
                match record.get("type"):
                    case "event":
                        await writer.add(_repr_from(record, where))
                    case "snapshot":
                        await writer.flush()
                        snapshots += await _save_snapshot(store.snapshots,
                                                          _snapshot_from(record, where))
                    case other:
                        raise UsageError(f"{where}: unknown record type {other!r}")
            await writer.flush()
            return writer.written, writer.skipped, snapshots

    if args.input == "-":
        written, skipped, snapshots = asyncio.run(run(sys.stdin))
    else:
        with Path(args.input).open(encoding="utf-8") as lines:
            written, skipped, snapshots = asyncio.run(run(lines))
    print(f"imported {written} events ({skipped} already stored) and {snapshots} snapshots",
          file=sys.stderr)
    return EXIT_OK


# -- copy ----------------------------------------------------------------------------------------
async def copy_journal(source: Store, target: Store, *, batch_size: int = DEFAULT_BATCH,
                       max_events: int | None = None, show_progress: bool = True,
                       ) -> tuple[int, list[str]]:
    """Copy every event and snapshot of `source` to `target`; resumable.

    Events of each id continue after the target's highest sequence number, so a run that was
    interrupted (or limited by `max_events`, which stops at the end of an atomic write, so a
    group may take the count past it) continues where it stopped. Returns the number of
    events written and the findings of the final count check (empty when complete and equal).
    """
    ids = await source.persistence_ids()
    remaining: dict[str, int] = {}
    for pid in ids:
        done = await target.journal.read_highest_sequence_nr(pid, 0)
        remaining[pid] = done
    total = 0
    counts: dict[str, int] = {}
    firsts: dict[str, int] = {}
    for pid in ids:
        counts[pid] = 0
        async for repr_ in source.events(pid):
            firsts.setdefault(pid, repr_.sequence_nr)
            counts[pid] += 1
            total += repr_.sequence_nr > remaining[pid]
    writer = _Writer(target.journal, batch_size)
    written = 0
    stopped = False  # by max_events, with events left to copy
    with progress(total if max_events is None else min(total, max_events), "copy") as bar:
        for pid in ids:
            async for repr_ in source.events(pid, remaining[pid] + 1):
                # Stop only between atomic writes: the one under way is finished even when
                # that takes the count past max_events (never a torn write in the target).
                if max_events is not None and written + writer.pending >= max_events \
                        and not writer.continues_group(repr_):
                    stopped = True
                    break
                step = await writer.add(repr_)
                written += step
                if show_progress:
                    bar.update(step)
            step = await writer.flush()
            written += step
            if show_progress:
                bar.update(step)
            if stopped:
                return written, ["stopped after --max-events: run again to copy the rest"]
    for pid in ids:
        for snapshot in await snapshots_of(source.snapshots, pid):
            await _save_snapshot(target.snapshots, snapshot)
    return written, await _count_check(source, target, ids, counts, firsts)


async def _count_check(source: Store, target: Store, ids: list[str], counts: dict[str, int],
                       firsts: dict[str, int]) -> list[str]:
    """Per id: the target holds as many events from the source's first one on, and snapshots."""
    findings: list[str] = []
    for pid in ids:
        first = firsts.get(pid)
        copied = 0
        if first is not None:
            async for _ in target.events(pid, first):
                copied += 1
        if copied != counts[pid]:
            findings.append(f"{pid}: source has {counts[pid]} events, target {copied}")
        source_snapshots = len(await snapshots_of(source.snapshots, pid))
        target_snapshots = len(await snapshots_of(target.snapshots, pid))
        if target_snapshots < source_snapshots:
            findings.append(f"{pid}: source has {source_snapshots} snapshots, target "
                            f"{target_snapshots}")
    return findings


def _copy(args: argparse.Namespace) -> int:
    if not Path(args.target).is_file():
        raise UsageError(f"--to: config file {args.target!r} does not exist")

    async def run() -> tuple[int, list[str]]:
        async with open_store(args.config, plugin_id=args.plugin_id, name="source") as source, \
                open_store(args.target, plugin_id=args.to_journal, must_exist=False,
                           name="target") as target:
            if source.journal_config.settings == target.journal_config.settings and \
                    source.journal_config.spec == target.journal_config.spec:
                raise UsageError("--to names the same journal as --config")
            return await copy_journal(source, target, batch_size=args.batch_size,
                                      max_events=args.max_events)

    written, findings = asyncio.run(run())
    for finding in findings:
        _print(finding)
    print(f"copied {written} events" + (f"; {len(findings)} finding(s)" if findings
                                         else "; counts match"), file=sys.stderr)
    return EXIT_FINDINGS if findings else EXIT_OK
