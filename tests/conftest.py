"""Shared fixtures: one actor system per test, on each thespian base; no process left behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors.testing.cleanup import sweep_admin_ports
from tests.pg import (
    pg_schema,  # noqa: F401 - the PostgreSQL tests' schema fixture
    skipped_line,
)

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
    for line in skipped_line:
        terminalreporter.write_line(line, yellow=True)
