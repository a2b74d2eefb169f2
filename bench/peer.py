"""The Python peer: the ``eventsourcing`` library's equivalent workloads (optional extra).

The same workload shape as ours: a ``Cart`` aggregate whose commands alternate
``add_item``/``remove_item`` with a short string payload, the library's SQLite recorder in
WAL mode, and ``PRAGMA synchronous=FULL`` set on every pooled connection (the library has no
setting for it). Rows are skipped when the library is not installed.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import EVENTS, PEER, Workload, settle_gc

_CARTS = 100  # aggregates the writes are spread over: 100 events each (Created + 99 items)
_LOADS = 5  # repository.get calls per replay round (their median is the round's time)


def available() -> bool:
    """True if the eventsourcing library is installed."""
    return importlib.util.find_spec("eventsourcing") is not None


def _app(folder: Path) -> tuple[Any, Any]:
    from bench import peer_model  # noqa: PLC0415 - needs the optional extra

    return peer_model.application(folder), peer_model.Cart


def _command(cart: Any, nr: int) -> None:
    name = f"item-{nr:05d}"
    if nr % 2:
        cart.add_item(name)
    else:
        cart.remove_item(f"item-{nr - 1:05d}")


command = _command  # the same commands on the PostgreSQL recorder (bench/postgres.py)


def _write(events_per_save: int) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        app, cart_cls = _app(folder)
        per_cart = EVENTS // _CARTS
        settle_gc()
        start = time.perf_counter()
        for _ in range(_CARTS):
            cart = cart_cls()  # the Created event is the cart's first
            pending = 1
            for nr in range(1, per_cart + 1):
                if pending == events_per_save:
                    app.save(cart)
                    pending = 0
                if nr < per_cart:
                    _command(cart, nr)
                    pending += 1
            if pending:
                app.save(cart)
        elapsed = time.perf_counter() - start
        _check_sync(app)
        app.close()
        return elapsed

    return run


def _check_sync(app: Any) -> None:
    recorder = app.recorder
    with recorder.datastore.get_connection(commit=False) as connection:
        level = connection._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]  # noqa: SLF001
    if level != 2:
        raise RuntimeError(f"eventsourcing ran with synchronous={level}, not FULL (2)")


# The aggregate's id is kept in the set-up folder, not in memory: each round runs in a
# fresh process (bench/isolated.py) that never saw the set-up.
_ID_FILE = "aggregate_id"


def _setup_replay(folder: Path) -> None:
    app, cart_cls = _app(folder)
    cart = cart_cls()
    for nr in range(1, EVENTS):
        _command(cart, nr)
        if nr % 1000 == 0:
            app.save(cart)
    app.save(cart)
    (folder / _ID_FILE).write_text(str(cart.id))
    app.close()


def _replay(folder: Path) -> float:
    app, _ = _app(folder)
    cart_id = uuid.UUID((folder / _ID_FILE).read_text())
    times = []
    settle_gc()
    for _ in range(_LOADS):
        start = time.perf_counter()
        cart = app.repository.get(cart_id)
        times.append(time.perf_counter() - start)
    if cart.version != EVENTS:
        raise RuntimeError(f"replayed to version {cart.version}, expected {EVENTS}")
    app.close()
    return statistics.median(times)


def workloads() -> list[Workload]:
    """The peer's rows, in table order (empty if the library is not installed)."""
    if not available():
        return []
    return [
        Workload("es_save_1", PEER, "eventsourcing: 1 event per save", EVENTS, _write(1)),
        Workload("es_save_100", PEER, "eventsourcing: 100 events per save", EVENTS,
                 _write(100)),
        Workload("es_replay", PEER, "eventsourcing: replay 10,000 events (repository.get)",
                 EVENTS, _replay, setup=_setup_replay, folder="es_replay"),
    ]
