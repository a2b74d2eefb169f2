"""The plugin loop's inline first step (`_PluginLoop._step_inline`, `inline_first_step`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from journal_plugins.inmem import InmemJournal
from journal_plugins.sqlite import SqliteJournal
from persistent_actors._thespian.plugin_host import _PluginLoop
from persistent_actors.journal import Journal, may_block


@pytest.fixture(params=[False, True], ids=["task", "inline"])
def loop(request: pytest.FixtureRequest) -> Iterator[_PluginLoop]:
    plugin_loop = _PluginLoop("test")
    plugin_loop.inline = request.param
    try:
        yield plugin_loop
    finally:
        plugin_loop.close()


async def _sync_op() -> tuple[bool, bool]:
    return may_block(), asyncio.get_running_loop() is not None


async def _waits(value: int) -> int:
    await asyncio.sleep(0)
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, future.set_result, value)
    got: int = await future
    await asyncio.sleep(0.001)
    return got + 1


async def _fails_before_waiting() -> None:
    raise KeyError("before")


async def _fails_after_waiting() -> None:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_exception, KeyError("after"))
    await future


async def _in_a_task_after_waiting() -> bool:
    await asyncio.sleep(0)
    return asyncio.current_task() is not None


def test_an_operation_completes_with_the_loop_and_context_set(loop: _PluginLoop) -> None:
    assert loop.run(_sync_op()) == (True, True)


def test_an_operation_that_waits_gets_its_futures_results(loop: _PluginLoop) -> None:
    assert loop.run(_waits(41)) == 42
    assert loop.run(_in_a_task_after_waiting()) is True


def test_exceptions_reach_the_caller_before_and_after_waiting(loop: _PluginLoop) -> None:
    with pytest.raises(KeyError, match="before"):
        loop.run(_fails_before_waiting())
    with pytest.raises(KeyError, match="after"):
        loop.run(_fails_after_waiting())


def test_only_a_class_that_declares_it_runs_inline() -> None:
    assert vars(SqliteJournal).get("inline_first_step") is True
    assert vars(InmemJournal).get("inline_first_step") is True
    assert Journal.inline_first_step is False

    class Subclass(SqliteJournal):
        """Adds code of its own, which may need a task: it does not inherit the declaration."""

    assert vars(Subclass).get("inline_first_step") is None
