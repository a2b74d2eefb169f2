"""The replay sample (`make replay`) runs, and every table it prints agrees with its script."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from samples import replay


def _expected(seconds: int) -> tuple[Counter[tuple[str, int]], Counter[tuple[int, str, str]],
                                     dict[str, tuple[int, int]], int]:
    commands = replay.scripted_match(seconds)
    actions: Counter[tuple[str, int]] = Counter()
    units: Counter[tuple[int, str, str]] = Counter()
    gathered: dict[str, tuple[int, int]] = {p: (0, 0) for p in replay.PLAYERS}
    events = 2  # MatchStarted, MatchEnded
    for c in commands:
        if c.kind in ("act", "train"):
            actions[(c.player, int(c.at // 60))] += 1
            events += 1
        if c.kind == "train":
            units[(int((c.at + replay._BUILD_TIME[c.detail]) // 60), c.player, c.detail)] += 1
            events += 1
        if c.kind == "gather":
            minerals, gas = gathered[c.player]
            gathered[c.player] = ((minerals + c.amount, gas) if c.detail == "minerals"
                                  else (minerals, gas + c.amount))
            events += 1
    return actions, units, gathered, events


def _section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 2:end]  # skip the title and the column header


def _check(out: str, seconds: int) -> None:
    actions, units, gathered, events = _expected(seconds)
    assert f"the match actor stored {events} events" in out
    assert f"it replayed all {events} events" in out

    for row in _section(out, "APM per player"):
        cells = [c.strip() for c in row.split("|")]
        if cells[0] != "average":
            assert [int(c) for c in cells[1:]] == [
                actions[(p, int(cells[0]))] for p in replay.PLAYERS]

    printed: Counter[tuple[int, str, str]] = Counter()
    for row in _section(out, "Production over time"):
        minute, *per_player = (c.strip() for c in row.split("|"))
        for player, cell in zip(replay.PLAYERS, per_player, strict=True):
            for count, unit in re.findall(r"(\d+) ([A-Za-z ]+?)(?:,|$)", cell):
                printed[(int(minute), player, unit)] += int(count)
    assert printed == units

    for row in _section(out, "Resource efficiency"):
        player, got, _, _ = (c.strip() for c in row.split("|"))
        assert tuple(int(n) for n in re.findall(r"\d+", got)) == gathered[player]

    carts = [row.split("|")[0].strip() for row in _section(out, "Which carts had a banana")]
    assert carts == ["alice", "bob"]  # carol removed an apple, not a banana


def test_the_replay_sample_prints_tables_that_match_its_match(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert replay.main([]) == 0
    _check(capsys.readouterr().out, replay.MATCH_SECONDS)


@pytest.mark.multiproc
def test_the_replay_sample_on_the_multiproc_base(capsys: pytest.CaptureFixture[str]) -> None:
    # A one-minute match: on this base every command crosses a process boundary.
    assert replay.main(["--base", "multiproc-tcp", "--seconds", "60"]) == 0
    _check(capsys.readouterr().out, 60)
