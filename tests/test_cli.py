"""The ``persistent-actors`` console script, run for real in a subprocess.

Stores are built through the plugin API (SQLite), by the samples (the cart and ``make
replay``), or corrupted by hand; every test checks exit status and output.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pty
import shlex
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import asyncpg
import msgpack
import pytest

from journal_plugins.inmem import InmemJournal, InmemSnapshotStore
from journal_plugins.sqlite import SqliteJournal, SqliteSnapshotStore
from persistent_actors._config import JOURNAL, PluginConfig
from persistent_actors._serialization import default_serializer
from persistent_actors.cli._common import Store
from persistent_actors.cli.journal import copy_journal
from persistent_actors.journal import AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria, SnapshotStore
from tests.pg import DSN

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "persistent-actors"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("PERSISTENT_ACTORS_CONFIG", None)


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env or ENV, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A user mistake: exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("persistent-actors: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def write_config(path: Path, db: Path) -> Path:
    path.write_text(f'[persistence.journal]\nplugin = "sqlite"\npath = "{db}"\n'
                    f'[persistence.snapshot_store]\nplugin = "sqlite"\npath = "{db}"\n')
    return path


def event(pid: str, nr: int, value: object, *, writer: str = "w1", at: float = 1.0,
          tags: tuple[str, ...] = ()) -> PersistentRepr:
    manifest, payload = default_serializer.to_binary(value)
    return PersistentRepr(pid, nr, manifest, payload, writer, at, tags)


async def _fill(db: Path) -> None:
    """Two ids; an atomic write of three; tags; bytes; a deleted prefix; two snapshots."""
    journal, snapshots = SqliteJournal({"path": str(db)}), SqliteSnapshotStore({"path": str(db)})
    await journal.start()
    await snapshots.start()
    try:
        await journal.write_messages([
            AtomicWrite((event("a", 1, {"n": 1}, at=10.5),)),
            AtomicWrite((event("b", 1, b"\x00\xffraw", tags=("t",), at=11.0),)),
            AtomicWrite(tuple(event("a", nr, ("tuple", nr), writer="w2", at=12.25,
                                    tags=("t", "u")) for nr in (2, 3, 4))),
            AtomicWrite((event("a", 5, "five", at=13.0),)),
            AtomicWrite((event("c", 1, 1), )),
            AtomicWrite((event("c", 2, 2), )),
        ])
        await journal.delete_messages_to("c", 1)
        await snapshots.save(SnapshotMetadata("a", 2, 12.5), *default_serializer.to_binary([1, 2]))
        await snapshots.save(SnapshotMetadata("a", 4, 12.75), *default_serializer.to_binary("s"))
    finally:
        await snapshots.close()
        await journal.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A config (returned) over a filled SQLite file, tmp_path / 'events.db'."""
    db = tmp_path / "events.db"
    asyncio.run(_fill(db))
    return write_config(tmp_path / "shop.toml", db)


# -- looking ---------------------------------------------------------------------------------
def test_ids_events_and_stats(store: Path) -> None:
    ids = cli("--config", str(store), "journal", "ids")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.splitlines() == ["a  highest=5  events=5", "b  highest=1  events=1",
                                       "c  highest=2  events=1"]
    as_json = cli("journal", "ids", "--json", "--config", str(store))
    assert json.loads(as_json.stdout.splitlines()[2]) == {
        "persistence_id": "c", "highest_sequence_nr": 2, "events": 1}

    events = cli("--config", str(store), "journal", "events", "a", "--from", "2", "--to", "3")
    assert events.stdout.splitlines() == [
        'a  #2  1970-01-01T00:00:12.250Z  (plain)  ["tuple", 2]  tags=t,u',
        'a  #3  1970-01-01T00:00:12.250Z  (plain)  ["tuple", 3]  tags=t,u']
    records = [json.loads(line) for line in cli(
        "--config", str(store), "journal", "events", "b", "--json").stdout.splitlines()]
    assert records == [{"persistence_id": "b", "sequence_nr": 1, "timestamp": 11.0,
                        "manifest": "", "tags": ["t"], "writer_uuid": "w1",
                        "event": {"@bytes": "AP9yYXc="}}]

    stats = json.loads(cli("--config", str(store), "journal", "stats", "--json").stdout)
    assert stats == {"events": 7, "persistence_ids": 3, "ids_with_events": 3,
                     "payload_bytes": stats["payload_bytes"],
                     "file_bytes": stats["file_bytes"], "tags": {"t": 4, "u": 3},
                     "snapshots": 2, "oldest": "1970-01-01T00:00:01.000Z",
                     "newest": "1970-01-01T00:00:13.000Z"}
    assert stats["payload_bytes"] > 0
    assert stats["file_bytes"] >= (store.parent / "events.db").stat().st_size
    readable = cli("--config", str(store), "journal", "stats").stdout
    assert "events:          7" in readable
    assert "tags:            t=4, u=3" in readable


def test_python_dash_m_and_the_environment_variable(store: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "persistent_actors", "journal", "ids"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**ENV, "PERSISTENT_ACTORS_CONFIG": str(store)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "a  highest=5  events=5"


def test_tail_follows_new_events_by_tag(store: Path, tmp_path: Path) -> None:
    async def write(*events: PersistentRepr) -> None:
        journal = SqliteJournal({"path": str(tmp_path / "events.db")})
        await journal.start()
        try:
            for repr_ in events:
                await journal.write_messages([AtomicWrite((repr_,))])
        finally:
            await journal.close()

    asyncio.run(write(event("d", 1, 1, tags=("live",))))
    tail = subprocess.Popen(
        [str(SCRIPT), "--config", str(store), "journal", "tail", "--tag", "live", "--from-start",
         "--limit", "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=ENV)
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())  # it runs: the stored event came first
        asyncio.run(write(event("d", 2, 2), event("d", 3, 3, tags=("live",))))
        second = json.loads(tail.stdout.readline())  # then the new tagged one, live
        assert tail.wait(timeout=30) == 0
    finally:
        tail.kill()
        tail.wait()
    assert [(r["persistence_id"], r["sequence_nr"], r["tags"]) for r in (first, second)] == \
        [("d", 1, ["live"]), ("d", 3, ["live"])]


# -- verifying -------------------------------------------------------------------------------
def test_verify_passes_a_healthy_store(store: Path) -> None:
    result = cli("--config", str(store), "journal", "verify")
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert "verified 7 events of 3 persistence ids: ok" in result.stderr


def test_verify_reports_each_corruption_on_one_line(store: Path, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.execute("UPDATE journal SET payload = x'c1' WHERE persistence_id = 'a' "
                   "AND sequence_nr = 5")  # 0xc1: never valid msgpack
        db.execute("DELETE FROM journal WHERE persistence_id = 'a' AND sequence_nr = 3")
        db.execute("UPDATE snapshot SET sequence_nr = 99 WHERE sequence_nr = 4")
    result = cli("--config", str(store), "journal", "verify")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    assert lines[0] == "a #4: torn atomic write: events 3..3 are missing"
    assert lines[1].startswith("a #5: undecodable event: corrupted payload")
    assert lines[2] == "a snapshot #99: refers to sequence number 99, beyond the highest stored (5)"
    # The deleted row had tags: SQLite's own check finds them orphaned.
    assert lines[3] == "database: 2 tag rows belong to no stored event"
    assert "4 finding(s)" in result.stderr
    # Showing the broken event is a user-facing error: one line naming id and number.
    one_line_error(cli("--config", str(store), "journal", "events", "a"),
                   "event 5 of 'a' cannot be decoded")


def test_verify_with_imported_classes_rebuilds_objects(store: Path, tmp_path: Path) -> None:
    module = tmp_path / "ops_shop_events.py"
    module.write_text("import dataclasses\nfrom persistent_actors import register\n"
                      "@register(manifest='shop.Thing')\n@dataclasses.dataclass(frozen=True)\n"
                      "class Thing:\n    name: str\n")

    async def write() -> None:
        journal = SqliteJournal({"path": str(tmp_path / "events.db")})
        await journal.start()
        try:  # stored state that Thing cannot be rebuilt from
            bad = PersistentRepr("e", 1, "shop.Thing", default_serializer.to_binary(
                {"colour": "red"})[1])
            await journal.write_messages([AtomicWrite((bad,))])
        finally:
            await journal.close()

    asyncio.run(write())
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    assert cli("--config", str(store), "journal", "verify", env=env).returncode == 0
    strict = cli("--config", str(store), "journal", "verify", "--import", "ops_shop_events",
                 env=env)
    assert strict.returncode == 1
    assert strict.stdout.startswith("e #1: undecodable event: cannot rebuild Thing")
    # Run next to the module, with nothing on PYTHONPATH: found in the working directory, as
    # `python -m` would find it (the console script's own path does not hold it).
    here = cli("--config", str(store), "journal", "verify", "--import", "ops_shop_events",
               cwd=tmp_path, env={**ENV, "PYTHONPATH": str(ROOT)})
    assert here.returncode == 1, here.stderr
    assert here.stdout.startswith("e #1: undecodable event: cannot rebuild Thing")


def test_verify_with_imports_finds_manifests_no_module_registers(store: Path,
                                                                 tmp_path: Path) -> None:
    """With --import, verify says whether replay would work: a manifest no imported module
    registers (a renamed class without an alias) is a finding, at the top or nested in plain
    data, for events and snapshots. Without --import only the structure is checked."""
    module = tmp_path / "ops_shop_known.py"
    module.write_text("import dataclasses\nfrom persistent_actors import register\n"
                      "@register(manifest='shop.Known')\n@dataclasses.dataclass(frozen=True)\n"
                      "class Known:\n    name: str\n")
    state = msgpack.packb({"name": "apple"})
    nested = msgpack.packb([msgpack.ExtType(1, msgpack.packb(["shop.Gone", {"name": "x"}]))])

    async def write() -> None:
        journal = SqliteJournal({"path": str(tmp_path / "events.db")})
        snapshots = SqliteSnapshotStore({"path": str(tmp_path / "events.db")})
        await journal.start()
        await snapshots.start()
        try:
            await journal.write_messages([AtomicWrite((
                PersistentRepr("k", 1, "shop.Known", state, "w", 1.0),
                PersistentRepr("k", 2, "shop.ItemAdded", state, "w", 1.0),
                PersistentRepr("k", 3, "", nested, "w", 1.0)))])
            await snapshots.save(SnapshotMetadata("k", 3, 2.0), "shop.OldState", state)
        finally:
            await snapshots.close()
            await journal.close()

    asyncio.run(write())
    before = _events_of(tmp_path / "events.db")
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    structure = cli("--config", str(store), "journal", "verify", env=env)
    assert structure.returncode == 0, structure.stdout
    strict = cli("--config", str(store), "journal", "verify", "--import", "ops_shop_known",
                 env=env)
    assert strict.returncode == 1, strict.stderr
    assert strict.stdout.splitlines() == [
        "k #2: undecodable event: no type is registered for manifest 'shop.ItemAdded'; register "
        "the class (or an alias for its old name) with persistent_actors.register",
        "k #3: undecodable event: no type is registered for manifest 'shop.Gone'; register "
        "the class (or an alias for its old name) with persistent_actors.register",
        "k snapshot #3: undecodable snapshot: no type is registered for manifest "
        "'shop.OldState'; register the class (or an alias for its old name) with "
        "persistent_actors.register"]
    assert "3 finding(s)" in strict.stderr
    assert _events_of(tmp_path / "events.db") == before


@pytest.mark.parametrize(("body", "expected"), [
    ('raise RuntimeError("DATABASE_URL is not set")\n',
     "importing it failed with RuntimeError: DATABASE_URL is not set"),
    ("def broken(:\n", "importing it failed with SyntaxError: "),
    ('import os\nos.environ["PA_TEST_UNSET_VARIABLE"]\n',
     "importing it failed with KeyError: 'PA_TEST_UNSET_VARIABLE'"),
    ("import sys\nsys.exit(3)\n", "importing it failed with sys.exit(3)"),
])
def test_an_imported_module_that_fails_is_one_line(store: Path, tmp_path: Path, body: str,
                                                    expected: str) -> None:
    """A module that is found but raises (not ImportError) is a mistake: exit 2, one line."""
    (tmp_path / "failing_app").mkdir()
    (tmp_path / "failing_app" / "__init__.py").write_text("")
    (tmp_path / "failing_app" / "events.py").write_text(body)
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    env.pop("PA_TEST_UNSET_VARIABLE", None)
    result = cli("--config", str(store), "journal", "verify", "--import", "failing_app.events",
                 env=env)
    one_line_error(result, "--import failing_app.events: ", expected)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -- export, import, copy ----------------------------------------------------------------------
def test_export_import_round_trip_is_byte_equal(store: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.jsonl"
    assert cli("--config", str(store), "journal", "export", "-o", str(first)).returncode == 0
    restored = write_config(tmp_path / "restored.toml", tmp_path / "restored.db")
    result = cli("--config", str(restored), "journal", "import", str(first))
    assert result.returncode == 0, result.stderr
    assert "imported 7 events (0 already stored) and 2 snapshots" in result.stderr
    second = cli("--config", str(restored), "journal", "export")
    assert second.stdout.encode() == first.read_bytes()
    assert cli("--config", str(restored), "journal", "verify").returncode == 0
    # Importing again stores nothing twice.
    again = cli("--config", str(restored), "journal", "import", str(first))
    assert "imported 0 events (7 already stored) and 0 snapshots" in again.stderr
    lines = first.read_text().splitlines()
    assert json.loads(lines[0]) == {"type": "header", "format": "persistent-actors-export",
                                    "version": 1}
    assert len(lines) == 1 + 7 + 2


def test_export_to_a_symlink_a_fifo_or_a_missing_directory(store: Path, tmp_path: Path) -> None:
    """Only a regular (or new) file is replaced by a complete export; a symlink is followed, a
    FIFO written to directly: both stay what they are."""
    expected = cli("--config", str(store), "journal", "export").stdout
    assert expected.count("\n") == 10
    backup = tmp_path / "backup-2026.jsonl"
    backup.write_text("old backup\n")
    backup.chmod(0o640)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(backup.name)
    result = cli("--config", str(store), "journal", "export", "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert backup.read_text() == expected
    assert backup.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name) == []

    dangling = tmp_path / "next.jsonl"
    dangling.symlink_to("new-2027.jsonl")
    assert cli("--config", str(store), "journal", "export", "-o", str(dangling)).returncode == 0
    assert dangling.is_symlink()
    assert (tmp_path / "new-2027.jsonl").read_text() == expected

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []

    def read() -> None:
        with fifo.open(encoding="utf-8") as f:
            received.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = cli("--config", str(store), "journal", "export", "-o", str(fifo))
    finally:
        if reader.is_alive():  # unblock a reader that no writer opened
            with fifo.open("w"):
                pass
        reader.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert received == [expected]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)

    # -o /dev/stdout: the command's standard output, here a log opened to append (>> log).
    log = tmp_path / "app.log"
    log.write_text("log line\n")
    inode = log.stat().st_ino
    with log.open("a") as appending:
        result = subprocess.run([str(SCRIPT), "--config", str(store), "journal", "export", "-o",
                                 "/dev/stdout"], stdout=appending, stderr=subprocess.PIPE,
                                text=True, env=ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "log line\n" + expected
    assert log.stat().st_ino == inode

    one_line_error(cli("--config", str(store), "journal", "export", "-o",
                       str(tmp_path / "missing_dir" / "x.jsonl")),
                   f"cannot write the export to '{tmp_path / 'missing_dir' / 'x.jsonl'}'",
                   f"directory '{tmp_path / 'missing_dir'}' does not exist")
    one_line_error(cli("--config", str(store), "journal", "export", "-o", str(tmp_path)),
                   f"cannot write the export to '{tmp_path}': it is a directory")
    # An export that fails leaves the file it would replace as it was, and no FILE.partial.
    missing = write_config(tmp_path / "missing.toml", tmp_path / "missing.db")
    one_line_error(cli("--config", str(missing), "journal", "export", "-o", str(link)),
                   "does not exist")
    assert backup.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name) == []


def _events_of(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(
            "SELECT persistence_id, sequence_nr, manifest, payload, writer_uuid, timestamp "
            "FROM journal WHERE deleted = 0"))


def _export_lines(store: Path) -> list[str]:
    """The lines of the store's export: the header, 7 events (lines 2-8), 2 snapshots (9-10)."""
    exported = cli("--config", str(store), "journal", "export")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert [json.loads(line)["type"] for line in lines] == \
        ["header"] + ["event"] * 7 + ["snapshot"] * 2
    return lines


def _changed(lines: list[str], number: int, **fields: object) -> list[str]:
    """`lines` with the record on line `number` (from 1) given other `fields`."""
    record = {**json.loads(lines[number - 1]), **fields}
    return [*lines[:number - 1], json.dumps(record), *lines[number:]]


def _import_text(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Import `text` as a file into a new SQLite store; return the result and the database."""
    export = tmp_path / "edited.jsonl"
    export.write_text(text)
    db = tmp_path / "imported.db"
    config = write_config(tmp_path / "imported.toml", db)
    return cli("--config", str(config), "journal", "import", str(export)), db


def _nothing_stored(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("journal", "snapshot")]
    return counts == [0, 0]


def test_import_skips_blank_lines_before_the_header(store: Path, tmp_path: Path) -> None:
    lines = _export_lines(store)
    result, db = _import_text(tmp_path, "\n  \n" + "\n\n".join(lines) + "\n\n")
    assert result.returncode == 0, result.stderr
    assert "imported 7 events (0 already stored) and 2 snapshots" in result.stderr
    assert _events_of(db) == _events_of(tmp_path / "events.db")


def test_import_needs_a_header_even_after_blank_lines(store: Path, tmp_path: Path) -> None:
    records = "\n".join(_export_lines(store)[1:]) + "\n"
    for text in (records, "\n" + records, "\n \n\n" + records):
        result, db = _import_text(tmp_path, text)
        one_line_error(result, "is not a persistent-actors export", "sequence_nr")
        assert _nothing_stored(db)


@pytest.mark.parametrize("text", ["", "\n", " \n\n"])
def test_import_refuses_an_empty_file(tmp_path: Path, text: str) -> None:
    result, db = _import_text(tmp_path, text)
    one_line_error(result, "is not a persistent-actors export", "no header line")
    assert _nothing_stored(db)


@pytest.mark.parametrize("nr", [0, -1, 2**63])
def test_import_refuses_an_event_sequence_nr_out_of_range(store: Path, tmp_path: Path,
                                                           nr: int) -> None:
    lines = _changed(_export_lines(store), 5, sequence_nr=nr)
    result, db = _import_text(tmp_path, "\n".join(lines) + "\n")
    one_line_error(result, "line 5: bad event record: sequence_nr must be an int in [1, 2**63-1]",
                   f"got {nr}")
    assert _nothing_stored(db)


@pytest.mark.parametrize("nr", [-1, 2**63])
def test_import_refuses_a_snapshot_sequence_nr_out_of_range(store: Path, tmp_path: Path,
                                                             nr: int) -> None:
    lines = _changed(_export_lines(store), 9, sequence_nr=nr)
    result, _ = _import_text(tmp_path, "\n".join(lines) + "\n")
    one_line_error(result, "line 9: bad snapshot record: sequence_nr must be an int in "
                   "[0, 2**63-1]", f"got {nr}")


def test_import_takes_a_snapshot_at_sequence_nr_0(store: Path, tmp_path: Path) -> None:
    """Saved before any event was persisted: the runtime stores it at 0, so an export has it."""
    lines = _changed(_export_lines(store), 9, sequence_nr=0)
    result, db = _import_text(tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "imported 7 events (0 already stored) and 2 snapshots" in result.stderr
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("SELECT sequence_nr FROM snapshot")) == [(0,), (4,)]


@pytest.mark.parametrize(("number", "kind", "field"), [
    (3, "event", "persistence_id"), (3, "event", "payload"), (9, "snapshot", "manifest")])
def test_import_names_a_missing_field(store: Path, tmp_path: Path, number: int, kind: str,
                                      field: str) -> None:
    # It said "bad event record: 'persistence_id'" (a KeyError's text).
    lines = _export_lines(store)
    record = json.loads(lines[number - 1])
    del record[field]
    lines[number - 1] = json.dumps(record)
    result, db = _import_text(tmp_path, "\n".join(lines) + "\n")
    one_line_error(result, f"line {number}: bad {kind} record: field {field!r} is missing")
    assert kind == "snapshot" or _nothing_stored(db)  # (a snapshot comes after the events)


@pytest.mark.parametrize("tags", [[""], ["t", ""]])
def test_import_refuses_an_empty_tag_as_the_runtime_does(store: Path, tmp_path: Path,
                                                         tags: list[str]) -> None:
    lines = _changed(_export_lines(store), 3, tags=tags)
    result, db = _import_text(tmp_path, "\n".join(lines) + "\n")
    one_line_error(result, "line 3: bad event record: a tag must be a non-empty str, got ''")
    assert _nothing_stored(db)


@pytest.mark.parametrize(("number", "kind"), [(4, "event"), (10, "snapshot")])
def test_import_refuses_an_empty_persistence_id(store: Path, tmp_path: Path, number: int,
                                                kind: str) -> None:
    lines = _changed(_export_lines(store), number, persistence_id="")
    result, _ = _import_text(tmp_path, "\n".join(lines) + "\n")
    one_line_error(result, f"line {number}: bad {kind} record: persistence_id must be a "
                   "non-empty str, got ''")


@pytest.mark.parametrize("number", [5, 9])  # an event, a snapshot
@pytest.mark.parametrize(("raw", "shown"), [
    ("1e400", "got inf"), ("-1e300", "got -1e+300"), ("NaN", "got nan"),
    ("-Infinity", "got -inf"), ("1e20", "got 1e+20"), ("1" + "0" * 400, "got 1000000000"),
])
def test_import_refuses_a_timestamp_that_is_no_time(store: Path, tmp_path: Path, number: int,
                                                    raw: str, shown: str) -> None:
    """Infinity (JSON's 1e400), NaN, years beyond 9999: every later command would choke."""
    lines = _changed(_export_lines(store), number, timestamp="@TS@")
    result, db = _import_text(tmp_path, "\n".join(lines).replace('"@TS@"', raw) + "\n")
    kind = "event" if number == 5 else "snapshot"
    one_line_error(result, f"line {number}: bad {kind} record: timestamp must be seconds since "
                   "the epoch: a finite number within years 1..9999 (UTC)", shown)
    if number == 5:
        assert _nothing_stored(db)


def _strict_json(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("stored", [float("inf"), -1e300, 1e20])
def test_a_stored_timestamp_that_is_no_time_is_shown_never_a_traceback(
        store: Path, tmp_path: Path, stored: float) -> None:
    """Stored by another writer or an older import: shown as it is, and verify finds it."""
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.execute("UPDATE journal SET timestamp = ? WHERE persistence_id = 'b'", (stored,))
        db.execute("UPDATE snapshot SET timestamp = ? WHERE sequence_nr = 4", (stored,))
    before = _events_of(tmp_path / "events.db")
    events = cli("--config", str(store), "journal", "events", "b")
    assert events.returncode == 0, events.stderr
    assert f"b  #1  (timestamp {stored!r}: not a time)  (plain)" in events.stdout
    as_json = cli("--config", str(store), "journal", "events", "b", "--json")
    assert as_json.returncode == 0, as_json.stderr
    record = _strict_json(as_json.stdout)
    assert isinstance(record, dict)
    assert record["timestamp"] == (stored if stored != float("inf") else "inf")
    tail = cli("--config", str(store), "journal", "tail", "--from-start", "--limit", "2")
    assert tail.returncode == 0, tail.stderr
    for args in (["stats"], ["stats", "--json"], ["export"], ["ids"]):
        result = cli("--config", str(store), "journal", *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    stats = _strict_json(cli("--config", str(store), "journal", "stats", "--json").stdout)
    assert isinstance(stats, dict)
    assert "not a time" in str(stats["newest"] if stored > 0 else stats["oldest"])
    verify = cli("--config", str(store), "journal", "verify")
    assert verify.returncode == 1
    problem = "not a finite number" if stored == float("inf") else "beyond the years 1..9999"
    # (a snapshot before 1970 is one SnapshotSelectionCriteria never selects: not seen)
    assert verify.stdout.splitlines() == [
        f"a snapshot #4: timestamp {stored!r} is {problem} (expected seconds since the epoch: "
        "a finite number within years 1..9999 (UTC))"] * (stored > 0) + [
        f"b #1: timestamp {stored!r} is {problem} (expected seconds since the epoch: a finite "
        "number within years 1..9999 (UTC))"]
    assert _events_of(tmp_path / "events.db") == before


async def _many(db: Path, ids: int, per_id: int) -> None:
    journal = SqliteJournal({"path": str(db), "synchronous": "OFF"})
    await journal.start()
    try:
        for nr in range(1, per_id + 1, 10):
            await journal.write_messages([AtomicWrite(tuple(
                event(f"id-{i}", n, {"i": i, "n": n}, at=float(nr)) for n in range(nr, nr + 10)))
                for i in range(ids)])
    finally:
        await journal.close()


def _group_export(path: Path, count: int, group: range) -> Path:
    """An export of `count` events of id 'big' where the events in `group` are one atomic write
    (same writer and timestamp), the others one each."""
    lines = [{"type": "header", "format": "persistent-actors-export", "version": 1}]
    payload = base64.b64encode(default_serializer.to_binary("e")[1]).decode()
    lines.extend({"type": "event", "persistence_id": "big", "sequence_nr": nr, "manifest": "",
                  "payload": payload, "writer_uuid": "w",
                  "timestamp": 500.0 if nr in group else float(nr), "tags": []}
                 for nr in range(1, count + 1))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _noted_writes(db: Path) -> list[list[str]]:
    """The write_messages calls a WriteNotingJournal at `db` got: their atomic writes."""
    text = Path(f"{db}-writes").read_text()
    return [[" ".join(pair) for pair in zip(line.split()[::2], line.split()[1::2], strict=True)]
            for line in text.splitlines()]


def test_import_and_copy_never_split_an_atomic_write_across_batches(tmp_path: Path) -> None:
    """A persist_all group across the 500-event batch boundary stays one atomic write, in one
    write_messages call (one transaction): an interruption cannot tear it."""
    export = _group_export(tmp_path / "group.jsonl", 520, range(495, 505))
    noting = tmp_path / "noting.toml"
    noting.write_text(f'[persistence.journal]\nplugin = "tests.cli_journal_plugins:'
                      f'WriteNotingJournal"\npath = "{tmp_path / "imported.db"}"\n'
                      f'[persistence.snapshot_store]\nplugin = "sqlite"\n'
                      f'path = "{tmp_path / "imported.db"}"\n')
    result = cli("--config", str(noting), "journal", "import", str(export))
    assert result.returncode == 0, result.stderr
    calls = _noted_writes(tmp_path / "imported.db")
    assert [w for call in calls for w in call if w.startswith("big 495")] == ["big 495..504"], \
        calls
    assert sum(len(call) for call in calls) == 494 + 1 + 16
    assert cli("--config", str(noting), "journal", "verify").returncode == 0

    # copy, with a batch of 4 that would end inside the group of 495..504
    source = write_config(tmp_path / "source.toml", tmp_path / "imported.db")
    target = tmp_path / "target.toml"
    target.write_text(noting.read_text().replace("imported.db", "target.db"))
    copied = cli("--config", str(source), "journal", "copy", "--to", str(target),
                 "--batch-size", "4")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    calls = _noted_writes(tmp_path / "target.db")
    assert [w for call in calls for w in call if w.startswith("big 495")] == ["big 495..504"]
    assert all(len(call) <= 4 for call in calls)
    assert _events_of(tmp_path / "target.db") == _events_of(tmp_path / "imported.db")


def test_copy_resumes_after_sigkill_and_checks_counts(tmp_path: Path) -> None:
    source_db = tmp_path / "source.db"
    asyncio.run(_many(source_db, ids=4, per_id=3000))
    source = write_config(tmp_path / "source.toml", source_db)
    target_db = tmp_path / "target.db"
    target = write_config(tmp_path / "target.toml", target_db)
    copy = subprocess.Popen([str(SCRIPT), "--config", str(source), "journal", "copy", "--to",
                             str(target), "--batch-size", "10"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        copied = 0
        while copied < 100:
            assert time.monotonic() < deadline
            assert copy.poll() is None, "the copy ended before it could be interrupted"
            time.sleep(0.05)
            if target_db.exists():
                try:
                    with sqlite3.connect(target_db) as conn:
                        copied = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
                except sqlite3.OperationalError:
                    copied = 0  # tables not created yet
    finally:
        copy.send_signal(signal.SIGKILL)
        copy.wait()
    assert 0 < len(_events_of(target_db)) < 12000
    resumed = cli("--config", str(source), "journal", "copy", "--to", str(target))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "counts match" in resumed.stderr
    assert _events_of(target_db) == _events_of(source_db)
    assert cli("--config", str(target), "journal", "verify").returncode == 0


def test_looking_at_a_postgres_schema_that_does_not_exist_never_creates_it(
        tmp_path: Path, pg_schema: str) -> None:
    # A typo in the schema name looked like a valid empty store (and created it).
    config = tmp_path / "typo.toml"
    section = f'plugin = "postgres"\ndsn = "{DSN}"\nschema = "{pg_schema}"\n'
    config.write_text(f"[persistence.journal]\n{section}[persistence.snapshot_store]\n{section}")
    for command in (["journal", "ids"], ["journal", "stats"], ["journal", "verify"]):
        one_line_error(cli("--config", str(config), *command),
                       "journal 'default' does not exist", f"schema {pg_schema!r}",
                       "has no journal table")

    async def schemas() -> int:
        connection = await asyncpg.connect(DSN, timeout=10)
        try:
            return int(await connection.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", pg_schema))
        finally:
            await connection.close()

    assert asyncio.run(schemas()) == 0


def test_copy_sqlite_to_postgres_and_back(store: Path, tmp_path: Path, pg_schema: str) -> None:
    """`journal copy` between two plugins: SQLite -> PostgreSQL -> SQLite keeps every event."""
    postgres = tmp_path / "postgres.toml"
    section = f'plugin = "postgres"\ndsn = "{DSN}"\nschema = "{pg_schema}"\n'
    postgres.write_text(f"[persistence.journal]\n{section}[persistence.snapshot_store]\n{section}")
    to_pg = cli("--config", str(store), "journal", "copy", "--to", str(postgres))
    assert to_pg.returncode == 0, to_pg.stdout + to_pg.stderr
    assert "counts match" in to_pg.stderr
    assert cli("--config", str(postgres), "journal", "verify").returncode == 0
    back = write_config(tmp_path / "back.toml", tmp_path / "back.db")
    to_back = cli("--config", str(postgres), "journal", "copy", "--to", str(back))
    assert to_back.returncode == 0, to_back.stdout + to_back.stderr
    assert _events_of(tmp_path / "back.db") == _events_of(tmp_path / "events.db")
    # The same lines; copy goes id by id, so the global order across ids may differ (the
    # migration module keeps orderings as well).
    exported = [sorted(cli("--config", str(config), "journal", "export").stdout.splitlines())
                for config in (store, postgres, back)]
    assert exported[0] == exported[1] == exported[2]
    assert len(exported[0]) > 5


def test_copy_in_steps_with_max_events(store: Path, tmp_path: Path) -> None:
    target = write_config(tmp_path / "target.toml", tmp_path / "target.db")
    # a: 1, then 2..4 in one atomic write, then 5. Three events would end inside that write:
    # the copy finishes it (4 events) rather than leave a torn write in the target.
    step = cli("--config", str(store), "journal", "copy", "--to", str(target), "--max-events", "3")
    assert step.returncode == 1
    assert "stopped after --max-events" in step.stdout
    assert "copied 4 events" in step.stderr
    assert [row[:2] for row in _events_of(tmp_path / "target.db")] == [
        ("a", 1), ("a", 2), ("a", 3), ("a", 4)]
    assert cli("--config", str(target), "journal", "verify").returncode == 0
    # At a boundary it stops there: a#5 alone.
    step = cli("--config", str(store), "journal", "copy", "--to", str(target), "--max-events", "1")
    assert "copied 1 events" in step.stderr
    assert len(_events_of(tmp_path / "target.db")) == 5
    rest = cli("--config", str(store), "journal", "copy", "--to", str(target))
    assert rest.returncode == 0, rest.stdout
    assert "copied 2 events; counts match" in rest.stderr
    assert _events_of(tmp_path / "target.db") == _events_of(tmp_path / "events.db")
    # A limit that leaves nothing to copy is a complete copy, not a stop.
    whole = write_config(tmp_path / "whole.toml", tmp_path / "whole.db")
    step = cli("--config", str(store), "journal", "copy", "--to", str(whole), "--max-events", "7")
    assert step.returncode == 0, step.stdout
    assert "copied 7 events; counts match" in step.stderr
    target_stats = json.loads(cli("--config", str(target), "journal", "stats", "--json").stdout)
    source_stats = json.loads(cli("--config", str(store), "journal", "stats", "--json").stdout)
    del target_stats["file_bytes"], source_stats["file_bytes"]
    assert target_stats == source_stats


def test_copy_shows_a_progress_bar_on_a_terminal(store: Path, tmp_path: Path) -> None:
    target = write_config(tmp_path / "target.toml", tmp_path / "target.db")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        result = subprocess.run(
            [str(SCRIPT), "--config", str(store), "journal", "copy", "--to", str(target)],
            stdout=subprocess.PIPE, stderr=follower, timeout=60, env=ENV, check=False)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert b"copy: 100%" in shown
    assert b"7/7" in shown


async def test_copy_between_in_memory_journals() -> None:
    """The copy core is plugin-neutral: here between two in-memory journals, in one process."""
    async def open_(journal: Journal, snapshots: SnapshotStore) -> Store:
        await journal.start()
        await snapshots.start()
        log = journal.event_log()
        assert log is not None
        return Store("inmem", journal, log, snapshots, PluginConfig(JOURNAL, "x", "inmem", {}))

    source = await open_(InmemJournal(), InmemSnapshotStore())
    target = await open_(InmemJournal(), InmemSnapshotStore())
    await source.journal.write_messages([
        AtomicWrite((event("x", 1, 1), event("x", 2, 2))), AtomicWrite((event("y", 1, "y"),))])
    await source.snapshots.save(SnapshotMetadata("x", 2, 5.0), *default_serializer.to_binary(3))
    written, findings = await copy_journal(source, target)
    assert (written, findings) == (3, [])
    assert [e async for e in target.events("x")] == [e async for e in source.events("x")]
    loaded = await target.snapshots.load("x", SnapshotSelectionCriteria.latest())
    assert loaded is not None
    assert loaded.metadata == SnapshotMetadata("x", 2, 5.0)
    assert await copy_journal(source, target) == (0, [])


# -- the samples' databases ----------------------------------------------------------------------
def test_on_the_replay_samples_database(tmp_path: Path) -> None:
    data = tmp_path / "replay"
    run = subprocess.run([sys.executable, "-m", "samples.replay", "--seconds", "60", "--data",
                          str(data)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    config = tmp_path / "replay.toml"
    config.write_text(f'[persistence.journal]\nplugin = "sqlite"\npath = "{data / "events.db"}"\n')
    ids = cli("--config", str(config), "journal", "ids")
    assert ids.returncode == 0, ids.stderr
    assert any(line.startswith("match-") or "match" in line for line in ids.stdout.splitlines())
    verify = cli("--config", str(config), "journal", "verify", "--import", "samples.replay")
    assert verify.returncode == 0, verify.stdout
    stats = json.loads(cli("--config", str(config), "journal", "stats", "--json").stdout)
    assert stats["events"] > 100
    assert {"cart", "removed"} <= set(stats["tags"])
    exported = cli("--config", str(config), "journal", "export")
    restored = write_config(tmp_path / "restored.toml", tmp_path / "restored.db")
    imported = subprocess.run([str(SCRIPT), "--config", str(restored), "journal", "import", "-"],
                              input=exported.stdout, capture_output=True, text=True, env=ENV,
                              timeout=120, check=False)
    assert imported.returncode == 0, imported.stderr
    assert cli("--config", str(restored), "journal", "export").stdout == exported.stdout


def test_on_the_cart_samples_database(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    sample_config = tmp_path / "sqlite.toml"
    sample_config.write_text((ROOT / "samples" / "sqlite.toml").read_text())
    run = subprocess.run([sys.executable, "-m", "samples.cart", str(sample_config)],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr
    ids = cli("--config", str(sample_config), "journal", "ids", cwd=tmp_path)
    assert ids.stdout.splitlines() == ["sample-id-1  highest=4  events=4"]
    events = cli("--config", str(sample_config), "journal", "events", "sample-id-1", "--json",
                 cwd=tmp_path)
    assert [json.loads(line)["manifest"] for line in events.stdout.splitlines()] == \
        ["cart.Evt"] * 4
    assert cli("--config", str(sample_config), "journal", "verify", "--import", "samples.cart",
               cwd=tmp_path).returncode == 0


# -- user mistakes -------------------------------------------------------------------------------
def test_user_mistakes_are_one_line_never_a_traceback(store: Path, tmp_path: Path) -> None:
    one_line_error(cli("--config", str(tmp_path / "nope.toml"), "journal", "ids"),
                   "config file", "nope.toml", "does not exist")
    wrong_key = tmp_path / "wrong.toml"
    wrong_key.write_text('[persistence.journal]\nplugin = "sqlite"\npth = "x.db"\n')
    one_line_error(cli("--config", str(wrong_key), "journal", "ids"), "'pth'")
    missing_db = write_config(tmp_path / "missing.toml", tmp_path / "missing.db")
    one_line_error(cli("--config", str(missing_db), "journal", "stats"),
                   "journal database file", "missing.db", "does not exist")
    assert not (tmp_path / "missing.db").exists()  # never created by looking at it
    one_line_error(cli("--config", str(store), "journal", "import", str(tmp_path / "no.jsonl")),
                   "export file", "does not exist")
    not_export = tmp_path / "not-export.jsonl"
    not_export.write_text('{"hello": 1}\n')
    one_line_error(cli("--config", str(store), "journal", "import", str(not_export)),
                   "is not a persistent-actors export")
    one_line_error(cli("--config", str(store), "journal", "copy", "--to", str(store)),
                   "same journal")
    one_line_error(cli("--config", str(store), "journal", "copy", "--to", "nowhere.toml"),
                   "nowhere.toml")
    in_memory = tmp_path / "inmem.toml"
    in_memory.write_text("[persistence.journal]\nplugin = \"inmem\"\n")
    one_line_error(cli("--config", str(in_memory), "journal", "ids"),
                   "'inmem'", "cannot be read from another process")
    usage = cli("--config", str(store), "journal", "events", "a", "--from", "-1")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    assert "expected a sequence number >= 0" in usage.stderr
    limit = cli("--config", str(store), "journal", "tail", "--limit", "-1")
    assert limit.returncode == 2
    assert "argument --limit: expected a number of events >= 0, got '-1'" in limit.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (("journal", "events", "a", "--from", "x"), "journal events: argument --from"),
    (("journal", "nosuch"), "journal: argument COMMAND: invalid choice: 'nosuch'"),
    (("journal", "copy"), "journal copy: the following arguments are required: --to"),
    ((), "the following arguments are required: GROUP"),
])
def test_a_malformed_command_line_is_the_usage_then_the_one_error_line(
        store: Path, args: tuple[str, ...], fragment: str) -> None:
    # argparse words a sub-command's error "persistent-actors journal events: error: ...";
    # the README promises "persistent-actors: error: ..." after the usage line, on every level.
    result = cli("--config", str(store), *args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: persistent-actors")
    assert lines[-1].startswith("persistent-actors: error: "), result.stderr
    assert fragment in lines[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (("tail", "--tag", ""), "tag must be a non-empty str"),
    # An argument that is not UTF-8 reaches Python as a lone surrogate: no event can have it.
    (("tail", "--tag", "a\udcff"), "tag 'a\\udcff' cannot be stored"),
    (("events", ""), "persistence_id must be a non-empty str"),
    (("events", "a\udcff"), "persistence_id 'a\\udcff' cannot be stored"),
])
def test_an_id_or_tag_no_event_can_have_is_one_line(store: Path, args: tuple[str, ...],
                                                    fragment: str) -> None:
    # README: the ids and tags of queries are checked the same way on every plugin. `tail`
    # followed the journal for ever waiting for such a tag; `events` failed with SQLite's own
    # encoding error. A short timeout: without the check `tail` never ends.
    result = subprocess.run([str(SCRIPT), "--config", str(store), "journal", *args],
                            capture_output=True, text=True, timeout=30, env=ENV, check=False)
    one_line_error(result, fragment)


def test_config_is_accepted_between_the_group_and_the_command(store: Path) -> None:
    # Before the group, after the command, and here: a user types it where it comes to mind.
    result = cli("journal", "--config", str(store), "ids")
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli("--config", str(store), "journal", "ids").stdout


# -- the README's commands -------------------------------------------------------------------------
def _readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Operating the event store", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()
            if line.startswith("persistent-actors ")]


def test_every_command_the_readme_shows_runs(tmp_path: Path) -> None:
    commands = _readme_commands()
    assert len(commands) >= 9
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "events.py").write_text(
        "import dataclasses\nfrom persistent_actors import register\n"
        "@register(manifest='readme.ItemRemoved')\n@dataclasses.dataclass(frozen=True)\n"
        "class ItemRemoved:\n    item: str\n")

    async def fill() -> None:
        journal = SqliteJournal({"path": str(tmp_path / "shop.db")})
        await journal.start()
        try:
            removed = default_serializer.to_binary({"item": "banana"})[1]
            await journal.write_messages([AtomicWrite((PersistentRepr(
                "cart-alice", nr, "readme.ItemRemoved", removed, "w", float(nr),
                ("removed",)),)) for nr in range(1, 7)])
        finally:
            await journal.close()

    asyncio.run(fill())
    write_config(tmp_path / "shop.toml", tmp_path / "shop.db")
    write_config(tmp_path / "restored.toml", tmp_path / "restored.db")
    write_config(tmp_path / "other.toml", tmp_path / "other.db")
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    for command in commands:
        # tail would follow forever: let it print the stored events and stop.
        extra = ["--from-start", "--limit", "1"] if "tail" in command else []
        result = cli(*command[1:], *extra, cwd=tmp_path, env=env)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    assert _events_of(tmp_path / "other.db") == _events_of(tmp_path / "shop.db")
    assert _events_of(tmp_path / "restored.db") == _events_of(tmp_path / "shop.db")


def test_a_named_journal_is_chosen_with_dash_dash_journal(store: Path, tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(store.read_text() + f'[persistence.journals.audit]\nplugin = "sqlite"\n'
                      f'path = "{tmp_path / "audit.db"}"\n')
    asyncio.run(_many(tmp_path / "audit.db", ids=1, per_id=10))
    assert cli("--config", str(config), "journal", "ids").stdout.splitlines()[0] == \
        "a  highest=5  events=5"
    assert cli("--config", str(config), "journal", "ids", "--journal", "audit").stdout \
        .splitlines() == ["id-0  highest=10  events=10"]
    one_line_error(cli("--config", str(config), "journal", "ids", "--journal", "nope"),
                   "no journal named 'nope'")


def test_the_console_script_finds_a_configs_modules_in_the_working_directory(
        tmp_path: Path) -> None:
    # `python -m persistent_actors` puts the working directory on the path, the console script
    # did not: an event adapter (or a node's entity class) of the app failed to import there.
    (tmp_path / "shop_adapters.py").write_text(
        "from persistent_actors.adapters import ReadEventAdapter\n"
        "class Upcaster(ReadEventAdapter):\n"
        "    def from_journal(self, event, manifest):\n"
        "        return [event]\n")
    db = tmp_path / "events.db"
    asyncio.run(_fill(db))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[persistence.journal]\nplugin = "sqlite"\npath = "{db}"\n'
        '[persistence.journal.event_adapters]\nup = "shop_adapters:Upcaster"\n'
        '[persistence.journal.event_adapter_bindings]\n"old.Event" = "up"\n')
    env = {**ENV, "PYTHONPATH": str(ROOT)}  # the app's folder is not on it: only the cwd
    result = cli("journal", "ids", "--config", str(config), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()


def test_reading_commands_work_on_a_read_only_postgres_connection(
        store: Path, tmp_path: Path, pg_schema: str) -> None:
    # A hot standby, or default_transaction_read_only: every command failed, since starting
    # the journal ran its schema setup (CREATE TABLE IF NOT EXISTS is refused there too).
    writable = tmp_path / "writable.toml"
    section = f'plugin = "postgres"\ndsn = "{DSN}"\nschema = "{pg_schema}"\n'
    writable.write_text(f"[persistence.journal]\n{section}[persistence.snapshot_store]\n{section}")
    assert cli("--config", str(store), "journal", "copy", "--to", str(writable)).returncode == 0
    read_only = tmp_path / "read_only.toml"
    dsn = DSN + ("&" if "?" in DSN else "?") + "options=-c%20default_transaction_read_only%3Don"
    section = f'plugin = "postgres"\ndsn = "{dsn}"\nschema = "{pg_schema}"\n'
    read_only.write_text(f"[persistence.journal]\n{section}[persistence.snapshot_store]\n{section}")
    for command in (["ids"], ["events", "a"], ["stats"], ["verify"], ["export"],
                    ["tail", "--from-start", "--limit", "2"]):
        expected = cli("--config", str(writable), "journal", *command)
        result = cli("--config", str(read_only), "journal", *command)
        assert result.returncode == 0, (command, result.stderr)
        assert (result.stdout, result.stderr) == (expected.stdout, expected.stderr), command
        assert result.stdout or "ok" in result.stderr
    copied = cli("--config", str(read_only), "journal", "copy", "--to",
                 str(write_config(tmp_path / "back.toml", tmp_path / "back.db")))
    assert copied.returncode == 0, copied.stderr
    # Writing through it is refused, saying why.
    exported = tmp_path / "other.jsonl"
    exported.write_text(cli("--config", str(store), "journal", "export").stdout
                        .replace('"persistence_id":"a"', '"persistence_id":"new"'))
    one_line_error(cli("--config", str(read_only), "journal", "import", str(exported)),
                   "cannot execute INSERT in a read-only transaction",
                   "is read-only: a hot standby, or default_transaction_read_only is on")
    # A schema that is not there is named, and not created.
    missing = tmp_path / "missing.toml"
    missing.write_text(read_only.read_text().replace(pg_schema, pg_schema + "_none"))
    one_line_error(cli("--config", str(missing), "journal", "ids"),
                   f"schema {pg_schema + '_none'!r}", "has no journal table")
    one_line_error(cli("--config", str(missing), "journal", "import", str(exported)),
                   f"cannot set up schema {pg_schema + '_none'!r}", "read-only")
