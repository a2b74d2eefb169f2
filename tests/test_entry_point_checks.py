"""Public entry points refuse bad arguments at the call, naming what is wrong.

Each row was accepted before and failed later (in a plugin, at replay, at the next write), or
failed with an error that named something else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from journal_plugins._postgres_db import parse_options
from persistent_actors import (
    NO_OFFSET,
    Actor,
    ActorInitializationError,
    ActorSystem,
    ConfigError,
    SyncReadJournal,
    Tagged,
    register,
)
from persistent_actors.journal import int_setting
from persistent_actors.projection import (
    ErrorStrategy,
    InmemOffsetStore,
    OffsetStore,
    Projection,
    SqliteOffsetStore,
)
from persistent_actors.supervision import Backoff
from persistent_actors.testing import Delay, Fail, PersistenceTestKit, Reject, TestProbe
from tests.bad_input_actors import Attempt, Misuser, SnapshotsInInit
from tests.conftest import system_config
from tests.failure_actors import Reporter


@dataclasses.dataclass(frozen=True)
class Money:
    cents: int


def test_register_refuses_an_encode_or_decode_that_is_no_function() -> None:
    # decode=<a str> was accepted: events were stored, and every replay failed.
    not_a_function: Any = "Money"
    with pytest.raises(TypeError, match=r"register\(Money\): decode= must be callable"):
        register(Money, manifest="tests.entry.Money", encode=lambda m: m.cents,
                 decode=not_a_function)
    with pytest.raises(TypeError, match=r"encode= must be callable"):
        register(Money, manifest="tests.entry.Money", encode=not_a_function, decode=Money)


def test_test_kit_filters_take_what_isinstance_takes() -> None:
    assert Fail(on_type=(int, bytes)).matches([b"x"])
    assert Reject(on_type=int | bytes).matches([3])
    assert not Reject(on_type=int | bytes).matches(["x"])


@pytest.mark.parametrize("seconds", [1e15, 8.7e13])
def test_a_backoff_beyond_1e9_seconds_is_refused(seconds: float) -> None:
    # 1e15 overflowed thespian's wakeup when the actor failed (after its event was lost).
    with pytest.raises(ValueError, match="min_backoff must be a finite number of seconds"):
        Backoff.on_stop(seconds, seconds)
    with pytest.raises(ValueError, match="max_backoff must be"):
        Backoff.on_stop(1.0, seconds)


_BYTES: Any = b"ab"
_SOURCE: Any = lambda offset: None  # noqa: E731 - never called


@pytest.mark.parametrize(("build", "error", "text"), [
    (lambda: Fail(on_type=5), TypeError, "Fail.on_type must be a class, a tuple"),  # type: ignore[arg-type]
    (lambda: Reject(predicate=5), TypeError,  # type: ignore[arg-type]
     "Reject.predicate must be callable"),
    (lambda: Fail(unless="yes"), TypeError, "Fail.unless must be a bool"),  # type: ignore[arg-type]
    (lambda: Fail(on_type=(int, 5)), TypeError,  # type: ignore[arg-type]
     "Fail.on_type must be a class, a tuple"),
    (lambda: Delay(1e300), ValueError, "Delay.seconds must be a finite number of seconds"),
    (lambda: Tagged("e", None), TypeError, "Tagged tags must be an iterable of str"),  # type: ignore[arg-type]
    (lambda: Tagged("e", _BYTES), TypeError, "not the bytes"),
    (lambda: ErrorStrategy.retry(3, "a", "b"), TypeError,  # type: ignore[arg-type]
     "min_backoff must be a number of seconds"),
    (lambda: ErrorStrategy.retry(3, True), TypeError, "min_backoff"),
    (lambda: SqliteOffsetStore(5), TypeError,  # type: ignore[arg-type]
     "SqliteOffsetStore: path must be a str or os.PathLike"),
    (lambda: Projection("p", _SOURCE, lambda e: None, None),  # type: ignore[arg-type]
     TypeError, "offset_store must be an OffsetStore"),
    (lambda: Projection("p", _SOURCE, lambda e: None, InmemOffsetStore(),
                        error_strategy="retry"),  # type: ignore[arg-type]
     TypeError, "error_strategy must be an ErrorStrategy"),
])
def test_objects_of_the_api_check_their_arguments(build: Any, error: type[Exception],
                                                  text: str) -> None:
    with pytest.raises(error, match=text):
        build()


@pytest.mark.parametrize(("settings", "text"), [
    ({"pool_size": 10**20}, r"'pool_size' must be an int in 1\.\.1000"),
    ({"replay_page_size": 10**20}, r"'replay_page_size' must be an int in 1\.\.1000000"),
    ({"connect_timeout": 1e300}, r"'connect_timeout' must be a number of seconds in \(0, "),
])
def test_postgres_settings_have_upper_bounds(settings: dict[str, Any], text: str) -> None:
    # pool_size = 10**20 spun in asyncpg's pool set-up for ever, never yielding.
    with pytest.raises(ConfigError, match=text):
        parse_options("journal", {"dsn": "postgresql://127.0.0.1/test", **settings})


def test_int_setting_checks_an_upper_bound_when_given() -> None:
    assert int_setting("p", {"n": 5}, "n", 1, minimum=1, maximum=5) == 5
    with pytest.raises(ConfigError, match=r"p: setting 'n' must be an int in 1\.\.5, got 6"):
        int_setting("p", {"n": 6}, "n", 1, minimum=1, maximum=5)


def test_offset_stores_check_ids_and_offsets_alike(tmp_path: Path) -> None:
    # InmemOffsetStore took save("p", 5), which SqliteOffsetStore refused: swapping the store
    # for the real one failed only then.
    async def check(store: OffsetStore) -> None:
        with pytest.raises(TypeError, match="a projection offset must be NoOffset"):
            await store.save("p", 5)  # type: ignore[arg-type]
        for bad in (None, ""):
            with pytest.raises(ValueError, match="projection_id must be a non-empty str"):
                await store.load(bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="projection_id must be a non-empty str"):
                await store.save(bad, NO_OFFSET)  # type: ignore[arg-type]

    async def both() -> None:
        await check(InmemOffsetStore())
        async with SqliteOffsetStore(tmp_path / "offsets.db") as store:
            await check(store)

    asyncio.run(both())


def test_a_sqlite_path_with_a_nul_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="setting 'path' must be a file name without NUL"):
        ActorSystem("entry", config=system_config(
            "simple", journal={"plugin": "sqlite", "path": "events\0.db"}))


@pytest.mark.parametrize(("wrapped", "text"), [
    ("sqlite", r"setting 'wrapped' must be a table of the wrapped plugin's settings, as "
               r"wrapped = \{ plugin = \"sqlite\", path = \"...\" \}, got 'sqlite'"),
    (None, r"setting 'wrapped' must be a table .* got None"),
    ({"plugin": 5}, r"setting 'wrapped.plugin' must be a plugin name .* got 5"),
])
@pytest.mark.parametrize("kind", ["journal", "snapshot_store"])
def test_a_test_plugins_wrapped_setting_is_checked(kind: str, wrapped: Any, text: str) -> None:
    # A str or None was a PluginError saying "dictionary update sequence element #0 has
    # length 1; 2 is required", naming neither the setting nor what it takes.
    plugin = "TestJournal" if kind == "journal" else "TestSnapshotStore"
    config = system_config("simple", **{kind: {
        "plugin": f"persistent_actors.testing:{plugin}", "wrapped": wrapped}})
    with pytest.raises(ConfigError, match=rf"\[persistence\.{kind}\] {text}"):
        ActorSystem("entry", config=config)


def test_probe_and_read_journal_arguments(tmp_path: Path) -> None:
    config = system_config("simple", journal={"plugin": "sqlite",
                                              "path": str(tmp_path / "j.db")})
    with ActorSystem("entry", config=config) as system:
        with pytest.raises(TypeError, match="TestProbe needs the ActorSystem"):
            TestProbe(None)  # type: ignore[arg-type]
        # Accepted before: the first setter failed with an AttributeError naming neither.
        with pytest.raises(TypeError, match="PersistenceTestKit needs the ActorSystem"):
            PersistenceTestKit("system")  # type: ignore[arg-type]
        probe = TestProbe(system)
        # It waited out its timeout first, then reported a timeout.
        with pytest.raises(TypeError, match=r"expect_msg_type\(\) needs a class"):
            probe.expect_msg_type(5, timeout=60)  # type: ignore[arg-type]
        for timeout in (math.nan, "1", None, -1):
            # NaN waited for ever; a str failed deep in the wait.
            with pytest.raises(ValueError, match="a probe's timeout must be a number"):
                probe.expect_msg(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"page_size must be an int in 1\.\.1000000"):
            system.read_journal(page_size=10**20)  # failed inside SQLite, at the first read
        # Accepted before: the first query failed with an AttributeError.
        with pytest.raises(TypeError, match="SyncReadJournal wraps a ReadJournal"):
            SyncReadJournal(system)  # type: ignore[arg-type]


ATTEMPTS = {
    # A persist from a thread the actor started was accepted and never written, and the next
    # command waited behind it for ever.
    "persist from a thread": ("IllegalActorStateError",
                              "persist must be called while the actor handles a message"),
    "defer None after a persist": ("TypeError", "defer handler must be callable, got None"),
    "delete_snapshot 2**64": ("ValueError", "sequence_nr must be an int in [0, MAX_SEQUENCE_NR"),
    "context.stop(5)": ("TypeError", "context.stop() needs an ActorRef"),
    # A silent no-op: the watch stayed, and the Terminated meant to be cancelled still came.
    "context.unwatch(name)": ("TypeError", "unwatch() takes the ActorRef given to watch()"),
    "is_timer_active([1])": ("TypeError", "a timer key must be hashable, got list"),
    "delivery snapshot id above its counter": (
        "ValueError", "delivery id 1 must be a distinct int in [1, current_delivery_id = 0]"),
    "delivery snapshot counter 'x'": (
        "ValueError", "current_delivery_id must be an int >= 0, got 'x'"),
    "ask inside an actor": ("IllegalActorStateError", "cannot be used inside an actor"),
    "become discard_old='no'": ("TypeError", "become() discard_old must be a bool, got 'no'"),
}


def test_calls_inside_an_actor_are_refused_where_they_are_made(base: str) -> None:
    with ActorSystem("entry", config=system_config(base)) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Misuser, probe.ref)
        for name, (error, text) in ATTEMPTS.items():
            actor.tell(Attempt(name))
            reported = probe.expect_msg(timeout=10)
            assert reported[:2] == (name, error), reported
            assert text in reported[2], reported
        actor.tell("still working")  # nothing was left waiting in its stash
        assert probe.expect_msg(timeout=10) == ("handled", "still working")


def test_a_snapshot_in_init_is_refused(base: str) -> None:
    # It was stored under the persistence id "" (read only once __init__ returned).
    with ActorSystem("entry", config=system_config(base)) as system, \
            pytest.raises(ActorInitializationError, match="save_snapshot cannot be called in "
                                                          "__init__"):
        system.actor_of(SnapshotsInInit)


def test_receive_one_returns_none_after_its_timeout() -> None:
    # As Akka's ReceiveOne (null); it returned a private sentinel object no caller could test.
    with ActorSystem("entry", config=system_config("simple")) as system:
        probe = TestProbe(system)
        assert probe.receive_one(timeout=0.05) is None
        probe.ref.tell("hello")
        assert probe.receive_one(timeout=10) == "hello"
        with pytest.raises(AssertionError, match="timeout"):
            probe.expect_msg(timeout=0.05)
        probe.ref.tell(None)  # a None message is a message to expect_msg and expect_no_msg
        with pytest.raises(AssertionError, match="expected no message, got None"):
            probe.expect_no_msg(timeout=10)


class NoIdActor(Actor):
    """An Actor without an __init__ taking the entity id."""

    def on_receive(self, message: Any) -> None:
        self.sender.tell(message)


def test_entities_checks_that_its_class_takes_the_entity_id_and_arguments(base: str) -> None:
    # Accepted before: every message to the type then failed at the entity's start, with
    # Python's "__init__() takes exactly one argument", which did not say the id comes first.
    with ActorSystem("entry", config=system_config(base)) as system:
        with pytest.raises(TypeError, match=r"each entity is built as NoIdActor\(entity_id, "
                                            r"\*args, \*\*kwargs\), which its constructor"):
            system.entities("no-id", NoIdActor)
        with pytest.raises(TypeError, match=r"missing a required argument: 'probe'"):
            system.entities("reporter", Reporter)
        assert system.entities("reporter", Reporter, TestProbe(system).ref) is not None
