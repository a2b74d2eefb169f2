"""Shared fixtures: one actor system per test, on each thespian base; no process left behind."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors.testing import TestProbe
from persistent_actors.testing.cleanup import sweep_admin_ports
from tests.pg import (
    pg_schema,  # noqa: F401 - the PostgreSQL tests' schema fixture
    skipped_line,
)


class _ForkedOnly(logging.Filter):
    """Passes the records of processes forked from this one: thespian's actor processes."""

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        return os.getpid() != self._pid


# An actor process's warnings (the guardian's, a host's) went to the copies of pytest's log
# handlers it inherited, and were lost with it. This handler writes them to file descriptor 2,
# which in a process forked during a test is pytest's capture: a failing test shows them under
# "Captured stderr". This process's own records reach pytest's log capture as before.
_actor_process_log = logging.StreamHandler(sys.__stderr__)
_actor_process_log.setLevel(logging.WARNING)
_actor_process_log.setFormatter(
    logging.Formatter("%(levelname)s %(name)s (actor process %(process)d): %(message)s"))
_actor_process_log.addFilter(_ForkedOnly())
logging.getLogger("persistent_actors").addHandler(_actor_process_log)

# "multiproc-tcp" is the base's default config: actor_of actors in shared host processes,
# one per CPU. "multiproc-tcp-isolated" is multiproc-tcp with `[actor_system] host_processes
# = 0`, one process per actor (thespian's model, an opt-in): the `base` fixture gives the test
# "multiproc-tcp", and `system_config` adds the option.
BASES = [
    pytest.param("simple", id="simple"),
    pytest.param("multiproc-tcp", id="multiproc-tcp", marks=pytest.mark.multiproc),
    pytest.param("multiproc-tcp-isolated", id="multiproc-tcp-isolated",
                 marks=pytest.mark.multiproc),
]
_isolated = False  # set by the `base` fixture for the isolated parametrisation


def system_config(base: str, **persistence: Any) -> dict[str, Any]:
    """A config mapping for `base`, with optional persistence sections."""
    config: dict[str, Any] = {"actor_system": {"base": base}}
    if _isolated and base == "multiproc-tcp":
        config["actor_system"]["host_processes"] = 0
    if persistence:
        config["persistence"] = persistence
    return config


def subscribe_synced(system: ActorSystem, probe: TestProbe, cls: type[Any],
                     marker: Any) -> None:
    """Subscribe `probe` to `cls` and return once the subscription is in place.

    A subscribe is a tell from this process; what an actor publishes comes from its own. On
    multiproc-tcp the two reach the event stream in no guaranteed order, so an event published
    by an actor right after a subscribe from here may find no subscription yet. `marker` (an
    instance of `cls`) is published from here, after the subscribe: once `probe` has it, the
    subscription is in place.
    """
    system.event_stream.subscribe(probe.ref, cls)
    system.event_stream.publish(marker)
    assert probe.expect_msg(timeout=10) == marker


@pytest.fixture(params=BASES)
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each behaviour test runs on the simple base (no pickling) and on multiproc-tcp.

    On multiproc-tcp twice: with its default shared host processes, and with one process per
    actor (`system_config` adds ``host_processes = 0``).
    """
    global _isolated  # noqa: PLW0603 - read by system_config, reset after the test
    value: str = request.param
    if value == "multiproc-tcp-isolated":
        _isolated = True
        try:
            yield "multiproc-tcp"
        finally:
            _isolated = False
        return
    yield value


@pytest.fixture
def system(base: str) -> Iterator[ActorSystem]:
    """A fresh actor system for one test, always shut down afterwards."""
    actor_system = ActorSystem("test", config=system_config(base))
    try:
        yield actor_system
    finally:
        actor_system.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Re-attach to every admin port this session used and shut it down."""
    sweep_admin_ports()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once, at the end, that the PostgreSQL tests were skipped and how to run them."""
    lines = list(skipped_line)
    # Under pytest-xdist (`make test`) the tests, and their skips, ran in the workers: the
    # line is found in their reports.
    for report in terminalreporter.stats.get("skipped", []) if not lines else ():
        longrepr = getattr(report, "longrepr", None)
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        if "to run the PostgreSQL tests" in reason:
            lines.append(f"PostgreSQL tests skipped: {reason.removeprefix('Skipped: ')}")
            break
    for line in lines:
        terminalreporter.write_line(line, yellow=True)
