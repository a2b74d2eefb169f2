"""The cart survives a full restart: two separate processes share one config.

On SQLite (one file) and on PostgreSQL (one schema on the tests' server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistent_actors._thespian.loopback import free_port
from persistent_actors.testing.cleanup import sweep_admin_ports
from tests.conftest import BASES
from tests.pg import DSN as PG_DSN
from tests.pg import drop_schema, require_postgres, schema_for

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    """A TCP port free on loopback now, outside the ephemeral range (see `free_port`)."""
    return free_port()


class Restart:
    """Runs child processes on one config; output goes to files (thespian's admin daemon keeps
    inherited pipes open, so capturing a pipe would hang)."""

    def __init__(self, base: str, tmp_path: Path, pg_schema: str | None = None) -> None:
        self.base = base
        self.tmp_path = tmp_path
        self.pg_schema = pg_schema
        self.ports: list[int] = []
        self.runs = 0

    def config(self) -> Path:
        port = _free_port()
        self.ports.append(port)
        path = self.tmp_path / f"config-{len(self.ports)}.toml"
        if self.pg_schema is None:
            journal = f'plugin = "sqlite"\npath = "{self.tmp_path / "events.db"}"\n'
            snapshots = f'plugin = "sqlite"\npath = "{self.tmp_path / "snapshots.db"}"\n'
        else:
            journal = snapshots = (
                f'plugin = "postgres"\ndsn = "{PG_DSN}"\nschema = "{self.pg_schema}"\n')
        system = f'base = "{self.base}"\n'
        if self.base == "multiproc-tcp-isolated":  # see tests.conftest.BASES
            system = 'base = "multiproc-tcp"\nhost_processes = 0\n'
        path.write_text(
            f'[actor_system]\n{system}admin_port = {port}\n'
            f"[persistence.journal]\n{journal}[persistence.snapshot_store]\n{snapshots}",
            encoding="utf-8",
        )
        return path

    def start(self, phase: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        out = self.tmp_path / f"out-{self.runs}.txt"
        with out.open("wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.restart_cart", phase, str(self.config())],
                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return proc, out

    def run(self, phase: str) -> str:
        proc, out = self.start(phase)
        assert proc.wait(timeout=60) == 0, out.read_text(errors="replace")
        return out.read_text(errors="replace")

    def cleanup(self) -> None:
        # A killed process leaves its multiproc admin and actors behind: re-attach, shut down.
        if self.base != "simple":
            sweep_admin_ports(self.ports)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite files, else a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        yield None
        return
    require_postgres()
    schema = schema_for(tmp_path)
    try:
        yield schema
    finally:
        drop_schema(schema)


@pytest.fixture(params=BASES)
def restart(request: pytest.FixtureRequest, tmp_path: Path,
            store: str | None) -> Iterator[Restart]:
    helper = Restart(request.param, tmp_path, store)
    try:
        yield helper
    finally:
        helper.cleanup()


def test_cart_recovers_in_a_new_process_after_a_normal_exit(restart: Restart) -> None:
    assert "count=2" in restart.run("write")
    assert "count=2" in restart.run("read")


def test_cart_recovers_in_a_new_process_after_sigkill(restart: Restart) -> None:
    proc, out = restart.start("hang")
    deadline = time.monotonic() + 60
    while "count=" not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "the writer never reported its count"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert "count=2" in out.read_text(errors="replace")
    assert "count=2" in restart.run("read")


def _processes_running(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line mentions `marker`.

    Thespian forks its admin and actor processes from the application, so they all carry
    the application's command line, which names this run's config file.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            stat = (entry / "stat").read_text(errors="replace")
        except OSError:
            continue
        if marker in cmdline and stat[stat.rfind(")") + 2:][:1] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _started_and_counted(restart: Restart,
                         phase: str) -> tuple[subprocess.Popen[bytes], Path, str]:
    """Start `phase`; return once it printed its count: the process, its output, its config."""
    proc, out = restart.start(phase)
    config = str(restart.tmp_path / f"config-{len(restart.ports)}.toml")
    deadline = time.monotonic() + 60
    while "count=" not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "the writer never reported its count"
        time.sleep(0.05)
    return proc, out, config


def _wait_until_none_left(marker: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _processes_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.multiproc
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="counts processes in /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_process_outlives_the_application_on_multiproc(tmp_path: Path, sig: int) -> None:
    # Defect 13: after SIGTERM or SIGKILL of the application, the admin, plugin and actor
    # processes lived on for ever, holding the journal open.
    restart = Restart("multiproc-tcp", tmp_path)
    try:
        proc, out, config = _started_and_counted(restart, "hang")
        running = _processes_running(config)
        assert len(running) >= 5, running  # the application, admin, guardian, plugins, cart
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=30)
        # SIGTERM: a clean exit through SystemExit (with blocks, atexit); SIGKILL: killed.
        assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL), \
            out.read_text(errors="replace")
        left = _wait_until_none_left(config, 15)
        assert not left, f"processes left after {signal.Signals(sig).name}: {left}"
        assert "count=2" in restart.run("read")  # the journal is intact and free
    finally:
        restart.cleanup()


@pytest.mark.multiproc
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="counts processes in /proc")
@pytest.mark.parametrize("end", ["shutdown", "SIGKILL"])
def test_no_process_outlives_the_application_while_a_handler_is_stuck(
        tmp_path: Path, end: str) -> None:
    # Thespian's shutdown asks each process to exit; one stuck in a handler never reads the
    # request and kept the admin, the logger and the rest alive, the admin port taken.
    restart = Restart("multiproc-tcp", tmp_path)
    try:
        proc, out, config = _started_and_counted(
            restart, "stuck-exit" if end == "shutdown" else "stuck-hang")
        if end == "SIGKILL":
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=60)
        assert code == (0 if end == "shutdown" else -signal.SIGKILL), \
            out.read_text(errors="replace")
        left = _wait_until_none_left(config, 40)
        assert not left, f"processes left after {end}: {left}"
        if end == "shutdown":
            assert "had not exited 3 s after the shutdown" in out.read_text(errors="replace")
        assert "count=2" in restart.run("read")  # the journal is intact and free
    finally:
        restart.cleanup()
