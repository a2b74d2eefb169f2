"""Snapshots: saving, recovering from them, selecting and deleting them (Akka's SnapshotSpec).

Every test runs on both bases. The actor's snapshot is the list of its events; recovery
reports Offered(sequence_nr, snapshot) before any replayed event.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from persistent_actors import (
    MAX_SEQUENCE_NR,
    ActorRef,
    ActorSystem,
    DeleteSnapshotsSuccess,
    DeleteSnapshotSuccess,
    Recovery,
    SaveSnapshotSuccess,
    SnapshotSelectionCriteria,
)
from persistent_actors.testing import TestProbe
from tests.persistent_actors_under_test import (
    DeleteSnap,
    DeleteSnaps,
    Offered,
    Persist,
    Persisted,
    Recovered,
    Replayed,
    Snap,
    kill,
    persist_events,
    spawn,
)


def _snap(ref: ActorRef, probe: TestProbe, pid: str, sequence_nr: int) -> SaveSnapshotSuccess:
    ref.tell(Snap())
    saved: SaveSnapshotSuccess = probe.expect_msg_type(SaveSnapshotSuccess)
    assert saved.metadata.persistence_id == pid
    assert saved.metadata.sequence_nr == sequence_nr
    return saved


def _history(system: ActorSystem, pid: str, probe: TestProbe) -> ActorRef:
    """Events a..e (1..5) with snapshots at 2 and 4; returns the live actor."""
    ref = spawn(system, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a", "b"])
    _snap(ref, probe, pid, 2)
    persist_events(ref, probe, ["c", "d"], first_sequence_nr=3)
    _snap(ref, probe, pid, 4)
    persist_events(ref, probe, ["e"], first_sequence_nr=5)
    return ref


def test_save_snapshot_replies_with_metadata_at_last_sequence_nr(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "snap-save", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a", "b", "c"])
    before = time.time()

    saved = _snap(ref, probe, "snap-save", 3)

    assert before - 5 <= saved.metadata.timestamp <= time.time() + 5


def test_recovery_starts_from_the_latest_snapshot_then_later_events(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-latest", probe)
    kill(ref, probe, "snap-latest")

    ref = spawn(system, "snap-latest", probe)

    probe.expect_msg(Offered(4, ("a", "b", "c", "d")))
    probe.expect_msg(Replayed("e", 5))
    probe.expect_msg(Recovered(5, ("a", "b", "c", "d", "e")))
    ref.tell(Persist("f"))
    probe.expect_msg(Persisted("f", 6))


def test_unhandled_snapshot_offer_falls_back_to_a_full_replay(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-unhandled", probe)
    kill(ref, probe, "snap-unhandled")

    spawn(system, "snap-unhandled", probe, accept_snapshots=False)

    probe.expect_msg(Offered(4, ("a", "b", "c", "d")))
    for i, event in enumerate("abcde", start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, tuple("abcde")))


def test_recovery_picks_the_latest_snapshot_at_or_below_max_sequence_nr(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-criteria", probe)
    kill(ref, probe, "snap-criteria")

    spawn(system, "snap-criteria", probe,
          recovery=Recovery(from_snapshot=SnapshotSelectionCriteria(max_sequence_nr=3)))

    probe.expect_msg(Offered(2, ("a", "b")))
    probe.expect_msg(Replayed("c", 3))
    probe.expect_msg(Replayed("d", 4))
    probe.expect_msg(Replayed("e", 5))
    probe.expect_msg(Recovered(5, tuple("abcde")))


def test_to_sequence_nr_also_bounds_the_snapshot(system: ActorSystem) -> None:
    """SnapshotSpec: latest snapshot matching an upper sequence-nr bound, with further replay."""
    probe = TestProbe(system)
    ref = _history(system, "snap-to", probe)
    kill(ref, probe, "snap-to")

    spawn(system, "snap-to", probe, recovery=Recovery(to_sequence_nr=3))

    probe.expect_msg(Offered(2, ("a", "b")))
    probe.expect_msg(Replayed("c", 3))
    probe.expect_msg(Recovered(5, ("a", "b", "c")))


def test_snapshot_selection_none_ignores_snapshots(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-none", probe)
    kill(ref, probe, "snap-none")

    spawn(system, "snap-none", probe,
          recovery=Recovery(from_snapshot=SnapshotSelectionCriteria.none()))

    for i, event in enumerate("abcde", start=1):  # no Offered first
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, tuple("abcde")))


def test_delete_snapshot_removes_it_from_recovery(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-delete-one", probe)

    ref.tell(DeleteSnap(4))
    deleted = probe.expect_msg_type(DeleteSnapshotSuccess)
    assert deleted.metadata.persistence_id == "snap-delete-one"
    assert deleted.metadata.sequence_nr == 4
    kill(ref, probe, "snap-delete-one")
    spawn(system, "snap-delete-one", probe)

    probe.expect_msg(Offered(2, ("a", "b")))  # the older snapshot is still there
    for i, event in enumerate("cde", start=3):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, tuple("abcde")))


def test_delete_snapshots_by_criteria(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = _history(system, "snap-delete-many", probe)

    below_3 = SnapshotSelectionCriteria(max_sequence_nr=3)
    ref.tell(DeleteSnaps(below_3))
    probe.expect_msg(DeleteSnapshotsSuccess(below_3))
    kill(ref, probe, "snap-delete-many")
    ref = spawn(system, "snap-delete-many", probe,
                recovery=Recovery(from_snapshot=SnapshotSelectionCriteria(max_sequence_nr=3)))
    # The snapshot at 2 is gone: nothing at or below 3 is offered.
    for i, event in enumerate("abcde", start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, tuple("abcde")))

    everything = SnapshotSelectionCriteria.latest()
    ref.tell(DeleteSnaps(everything))
    probe.expect_msg(DeleteSnapshotsSuccess(everything))
    kill(ref, probe, "snap-delete-many")
    spawn(system, "snap-delete-many", probe)
    for i, event in enumerate("abcde", start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, tuple("abcde")))


@pytest.mark.parametrize(("build", "named"), [
    (lambda: SnapshotSelectionCriteria(min_sequence_nr=2**64), "min_sequence_nr"),
    (lambda: SnapshotSelectionCriteria(max_sequence_nr=-1), "max_sequence_nr"),
    (lambda: SnapshotSelectionCriteria(max_timestamp=float("nan")), "max_timestamp"),
    (lambda: SnapshotSelectionCriteria(min_timestamp=-1.0), "min_timestamp"),
    (lambda: SnapshotSelectionCriteria(max_timestamp="soon"),  # type: ignore[arg-type]
     "max_timestamp"),
    (lambda: Recovery(replay_max=2**63), "replay_max"),
    (lambda: Recovery(to_sequence_nr=-5), "to_sequence_nr"),
])
def test_criteria_and_recovery_bounds_out_of_range_are_named(build: Any, named: str) -> None:
    # A number no journal can hold failed recovery later, inside the database driver
    # ("Python int too large to convert to SQLite INTEGER").
    with pytest.raises(ValueError, match=named):
        build()
    assert Recovery(replay_max=MAX_SEQUENCE_NR).replay_max == MAX_SEQUENCE_NR
    assert SnapshotSelectionCriteria(max_timestamp=math.inf).max_timestamp == math.inf
