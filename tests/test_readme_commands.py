"""Every command the README shows works on a fresh clone (defect 15).

The tracked files are copied into an empty folder, as `git clone` would give them (no
``data/`` folder, no databases), with this run's ``.venv`` beside them. The cheap commands run
for real there; the long ones (``make test`` is this suite, ``make bench`` and ``make torture``
take minutes) must at least name a real make target or parse their arguments. A command added
to the README without a case here fails `test_every_readme_command_is_checked`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from persistent_actors._thespian.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))  # linked from the README: same checks

# Inline code and shell-block lines that start like a command.
_COMMAND = re.compile(r"^(?:make |\.venv/bin/python -m |python -m |pip install )")


def readme_commands() -> set[str]:
    """The commands the README and the docs it links show, whitespace-normalised."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in (README, *DOCS))
    found: set[str] = set()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if _COMMAND.match(command):
                found.add(command)
    for inline in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL)):
        command = " ".join(inline.split())
        if _COMMAND.match(command):
            found.add(command)
    return found


# What each documented command is checked with (see the module docstring).
RUN = {  # run for real in the fresh clone
    "make sample", "make replay", ".venv/bin/python -m samples.cart samples/sqlite.toml",
}
SERVE = {".venv/bin/python -m samples.web [samples/sqlite.toml]"}  # started, queried, stopped
DRY_RUN = {  # the target exists (and takes the variable given)
    "make test", "make test TEST_WORKERS=0", "make bench", "make torture CYCLES=500",
}
ARGUMENTS = {  # the module exists and accepts these arguments (--help after them)
    ".venv/bin/python -m bench --out docs/bench",
    ".venv/bin/python -m bench --rounds 3 --only persist,es_save_1,raw_tx1",
    ".venv/bin/python -m bench.profile persist",
    "python -m bench.cpu service_async_mp",
    "python -m bench.cpu service_async_mp --rounds 1 --requests 2000",
    "python -m bench.cpu service_async",
    "python -m bench.profile service_threads",
    "python -m bench.profile service_async",
    "python -m bench.instructions service_async",
    ".venv/bin/python -m bench.write_breakdown 4 --only command_hop,inmem_pb,inmem_pa,pb,raw_tx50",
    "python -m bench.write_breakdown 3 --only raw_tx1,journal_api_1,inmem_p,inmem_p_fsync,p",
    "python -m bench.write_breakdown 5",
    "python -m bench.write_breakdown 5 --only command_hop,inmem_pb,inmem_p,pb",
    ".venv/bin/python -m bench.write_breakdown 4",
    ".venv/bin/python -m bench.write_breakdown 5 --only flush_page,raw_tx1,journal_sql_1,"
    "journal_api_1,inmem_p,inmem_p_fsync,p",
    ".venv/bin/python -m bench.replay_breakdown",
    "python -m bench.profile <row>",
    ".venv/bin/python -m bench --rounds 3 --only pg_persist,pg_persist_all,pg_persist_async,"
    "pg_persist_group10,pg_persist_group100,pg_recovering,raw_pg_tx1,raw_pg_unnest100,"
    "raw_pg_read,es_pg_save_1,es_pg_save_100,es_pg_replay",
    ".venv/bin/python -m samples.replay --data replay-data",
    ".venv/bin/python -m bench --rounds 3 --only raw_tx1,raw_tx50,service_async,service_threads,"
    "service_read,service_async_mp,service_threads_mp,service_async_10k,create_100,create_10k",
    "python -m persistent_actors",
    "python -m persistent_actors node --config node.toml",
    ".venv/bin/python -m bench --rounds 3 --only persist,persist_all,persist_async,"
    "persist_all_async,persist_group10,persist_group100,recovering,raw_tx1,raw_tx50,raw_read",
    ".venv/bin/python -m bench --rounds 3 --only pg_persist,pg_persist_all,pg_persist_async,"
    "pg_persist_group100,pg_recovering,raw_pg_tx1,raw_pg_unnest100,raw_pg_read",
}
USAGE = {  # run without its arguments: prints its usage line and exits with status 2
    "python -m journal_plugins.migration to-postgres FILE DSN [SCHEMA]",
}
# Run with real arguments by a test of their own (minutes long, or needing the server).
COVERED = {
    ".venv/bin/python -m tests.crash_torture 500 /tmp/torture postgres:<schema>":
        "tests/test_crash_torture.py",
}
EXTRAS = {  # the extra is declared in pyproject.toml
    "pip install -e '.[web]'", "pip install 'persistent_actors[postgres]'",
    "pip install 'persistent_actors[progress]'",
}


def test_every_readme_command_is_checked() -> None:
    commands = readme_commands()
    assert commands >= {"make sample", "make test"}
    unchecked = commands - RUN - SERVE - DRY_RUN - ARGUMENTS - USAGE - set(COVERED) - EXTRAS
    assert not unchecked, f"README commands without a check in this file: {sorted(unchecked)}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files (working-tree content) in a fresh folder, with this run's .venv."""
    folder = tmp_path_factory.mktemp("clone")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)  # mtimes kept: make sees the venv up to date
    venv = Path(sys.prefix)
    (folder / ".venv").symlink_to(venv, target_is_directory=True)
    if not (venv / ".installed").exists():
        pytest.skip("not running from the project's make-built .venv")
    return folder


def run(clone: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PERSISTENT_ACTORS_CONFIG"}
    if command.startswith("make "):
        # Never let make rebuild the shared .venv from the copy (its stamps may be older
        # than a freshly pulled pyproject.toml): the venv is this run's, as it is.
        command = command.replace("make ", "make -o .venv/.installed -o .venv/.bench-installed ",
                                  1)
    # Output goes to files, never pipes: a leaked actor-system process would hold a pipe open.
    out, err = clone / "stdout.txt", clone / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.run(command, shell=True, cwd=clone, env=env, stdout=stdout,
                              stderr=stderr, timeout=timeout, check=False).returncode
    return subprocess.CompletedProcess(command, code, out.read_text(), err.read_text())


@pytest.mark.parametrize("command", sorted(RUN))
def test_a_readme_command_runs_on_a_fresh_clone(clone: Path, command: str) -> None:
    shutil.rmtree(clone / "data", ignore_errors=True)
    result = run(clone, command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if "samples.cart" in command or command == "make sample":
        assert re.search(r"count before kill: (\d+)\nkilled", result.stdout)
        before = re.findall(r"count before kill: (\d+)", result.stdout)[0]
        assert f"recovered count: {before}" in result.stdout, result.stdout
    if "sqlite.toml" in command:
        assert (clone / "data" / "cart-events.db").is_file()
        again = run(clone, command)  # the events survived the process: numbering goes on
        assert again.returncode == 0, again.stderr

        def last_sequence_nr(output: str) -> int:
            return max(map(int, re.findall(r"\(sequence_nr (\d+)\)", output)))

        first = last_sequence_nr(result.stdout)
        assert last_sequence_nr(again.stdout) == 2 * first, again.stdout


def test_the_cart_sample_runs_as_a_file(clone: Path) -> None:
    # Its hand-over to `samples.cart` (for multiproc-tcp) failed when run by path, where the
    # package is not importable.
    result = run(clone, ".venv/bin/python samples/cart.py")
    assert result.returncode == 0, result.stderr
    assert "recovered count: 2" in result.stdout, result.stdout


def test_the_cart_sample_runs_on_multiproc_tcp(clone: Path) -> None:
    # `python -m samples.cart` runs its module as __main__, which actor processes cannot
    # import the cart's class from: it was refused with ActorInitializationError.
    (clone / "mp.toml").write_text(
        f'[actor_system]\nbase = "multiproc-tcp"\nadmin_port = {free_port()}\n')
    result = run(clone, ".venv/bin/python -m samples.cart mp.toml")
    assert result.returncode == 0, result.stderr
    assert "on base 'multiproc-tcp'" in result.stdout
    assert "recovered count: 2" in result.stdout, result.stdout


def test_a_mistake_in_a_samples_config_is_one_clear_line(clone: Path) -> None:
    (clone / "bad.toml").write_text('[persistence.journal]\nplugin = "sqlite"\npaht = "x.db"\n')
    for command in (".venv/bin/python -m samples.cart bad.toml",
                    ".venv/bin/python -m samples.web bad.toml",
                    ".venv/bin/python -m samples.cart missing.toml"):
        result = run(clone, command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith("error: "), (command, result.stderr)
        assert "paht" in lines[0] or "missing.toml" in lines[0]


def _free_port() -> int:
    """A TCP port free on loopback now, outside the ephemeral range (see `free_port`)."""
    return free_port()


@pytest.mark.parametrize("command", sorted(SERVE))
def test_the_readme_web_command_serves_on_a_fresh_clone(clone: Path, command: str) -> None:
    shutil.rmtree(clone / "data", ignore_errors=True)
    port = _free_port()
    argv = [*command.replace("[", "").replace("]", "").split(), "--port", str(port)]
    err = clone / "web-stderr.txt"
    with err.open("w") as stderr:
        server = subprocess.Popen(argv, cwd=clone, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cart", timeout=5) as r:
                    assert r.status == 200
                    assert b'"count"' in r.read()
                    break
            except OSError:
                assert server.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "the web sample never answered"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert (clone / "data" / "cart-events.db").is_file()
    assert "Traceback" not in err.read_text(), err.read_text()


@pytest.mark.parametrize("command", sorted(DRY_RUN))
def test_a_long_readme_make_command_names_a_real_target(clone: Path, command: str) -> None:
    result = run(clone, command.replace("make ", "make -n ", 1))
    assert result.returncode == 0, result.stderr
    assert ".venv/bin/python -m" in result.stdout
    if "TEST_WORKERS=0" in command:
        assert "pytest -q -n 0" in result.stdout, result.stdout


@pytest.mark.parametrize("command", sorted(ARGUMENTS))
def test_a_long_readme_python_command_accepts_its_arguments(clone: Path, command: str) -> None:
    command = command.replace("<row>", "persist")
    if command.startswith("python -m"):
        command = f".venv/bin/{command}"
    result = run(clone, f"{command} --help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout


@pytest.mark.parametrize("command", sorted(USAGE))
def test_a_readme_command_without_arguments_prints_its_usage(clone: Path, command: str) -> None:
    module = command.split()[2]
    result = run(clone, f".venv/bin/python -m {module}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: "), result.stderr


@pytest.mark.parametrize("command", sorted(COVERED))
def test_a_readme_command_covered_elsewhere_has_its_test(command: str) -> None:
    module = command.split()[2]
    test_file = ROOT / COVERED[command]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    assert module in test_file.read_text(encoding="utf-8") or \
        module.rsplit(".", 1)[-1] in test_file.read_text(encoding="utf-8")


def test_the_readme_extras_exist() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for command in EXTRAS:
        extra = re.findall(r"\[(\w+)\]", command)[0]
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.MULTILINE), extra
