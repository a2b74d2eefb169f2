"""Service traffic: requests that come from outside the actor system, as a web service sends them.

Each request is one command to one cart actor, which persists one event and replies from its
handler (so the reply means "stored"). Clients are either coroutines on one event loop calling
``ask_async`` or plain threads calling ``ask``. SQLite at its durable default (WAL, FULL).
Rows are requests/s; each records its per-request latencies, reported as p50/p99.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import OURS, Workload
from persistent_actors import ActorRef, ActorSystem, PersistentActor, RecoveryCompleted, register

_ASK_TIMEOUT = 120.0
REQUESTS = 4_000  # per round, spread over the clients
SMALL = 100  # live actors in the ordinary rows
LARGE = 10_000  # live actors in the entity-count rows


@register(manifest="bench.ServiceItemAdded")
@dataclasses.dataclass(frozen=True, slots=True)
class ItemAdded:
    """The one event a request stores."""

    nr: int


class ServiceCart(PersistentActor):
    """Persists one event per ``("add", n)`` and replies after the handler; answers "count"."""

    def __init__(self, pid: str) -> None:
        self._pid = pid
        self.count = 0

    @property
    def persistence_id(self) -> str:
        """One stream per cart."""
        return self._pid

    def on_command(self, message: Any) -> None:
        """``("add", n)`` persists; "count" replies at once."""
        match message:
            case ("add", int(nr)):
                self.persist(ItemAdded(nr), self._added)
            case "count":
                self.sender.tell(self.count)
            case _:
                self.unhandled(message)

    def _added(self, event: ItemAdded) -> None:
        self.count += 1
        self.sender.tell(event.nr)

    def on_recover(self, message: Any) -> None:
        """Replay counts events."""
        match message:
            case ItemAdded():
                self.count += 1
            case RecoveryCompleted():
                pass


def sqlite_config(folder: Path, base: str, host_processes: int | None = None) -> dict[str, Any]:
    """A system on `base` with the durable SQLite journal and snapshot store in `folder`.

    `host_processes`: multiproc-tcp's ``[actor_system] host_processes`` (0: one process per
    actor); None leaves the key out: its default, one shared host process per CPU.
    """
    sqlite = {"synchronous": "FULL", "journal_mode": "WAL"}
    system: dict[str, Any] = {"base": base}
    if host_processes is not None:
        system["host_processes"] = host_processes
    return {
        "actor_system": system,
        "persistence": {
            "journal": {"plugin": "sqlite", "path": str(folder / "journal.db"), **sqlite},
            "snapshot_store": {"plugin": "sqlite", "path": str(folder / "snapshots.db"),
                               **sqlite},
        },
    }


def _start(system: ActorSystem, actors: int) -> list[ActorRef]:
    refs = [system.actor_of(ServiceCart, f"svc-{i}", name=f"svc-{i}") for i in range(actors)]
    for ref in refs:  # recovered (of nothing) before the clock starts
        if ref.ask("count", timeout=_ASK_TIMEOUT) != 0:
            raise RuntimeError("service cart did not start empty")
    return refs


def _check_answer(request: Any, answer: Any) -> None:
    expected = request[1] if isinstance(request, tuple) else 0
    if answer != expected:
        raise RuntimeError(f"request {request!r} answered {answer!r}: replies crossed")


def _async_clients(refs: list[ActorRef], clients: int, requests: int, persist: bool,
                   latencies: list[float]) -> float:
    per_client = requests // clients

    async def client(c: int) -> None:
        for k in range(per_client):
            ref = refs[(c + k * clients) % len(refs)]
            request: Any = ("add", c * per_client + k) if persist else "count"
            started = time.perf_counter()
            answer = await ref.ask_async(request, timeout=_ASK_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            if persist:
                _check_answer(request, answer)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        return time.perf_counter() - start

    return asyncio.run(main())


def _thread_clients(refs: list[ActorRef], clients: int, requests: int,
                    latencies: list[float]) -> float:
    per_client = requests // clients
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        mine: list[float] = []
        try:
            for k in range(per_client):
                ref = refs[(c + k * clients) % len(refs)]
                request = ("add", c * per_client + k)
                started = time.perf_counter()
                answer = ref.ask(request, timeout=_ASK_TIMEOUT)
                mine.append(time.perf_counter() - started)
                _check_answer(request, answer)
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            errors.append(e)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


@dataclasses.dataclass
class _Row:
    """A service row's run function, keeping its latencies for the report."""

    base: str
    clients: str  # "async" or "threads"
    actors: int
    requests: int
    persist: bool = True
    latencies: list[float] = dataclasses.field(default_factory=list)
    host_processes: int | None = None  # None: the config's default (see `sqlite_config`)

    def __call__(self, folder: Path) -> float:
        config = sqlite_config(folder, self.base, self.host_processes)
        with ActorSystem("bench-service", config) as system:
            refs = _start(system, self.actors)
            # Start-up is over: settle the cyclic GC's account of it before the clock. Starting
            # 10,000 actors leaves a full collection due (its objects reached the oldest
            # generation after the last one), ~100 ms over ~260,000 objects that would land on
            # the first requests; traffic itself leaves no cyclic garbage and makes none due.
            gc.collect()
            if self.clients == "async":
                return _async_clients(refs, 100, self.requests, self.persist, self.latencies)
            return _thread_clients(refs, 16, self.requests, self.latencies)


@dataclasses.dataclass
class _Create:
    """Creation rate: `actors` persistent actors created and recovered, per second."""

    actors: int

    def __call__(self, folder: Path) -> float:
        with ActorSystem("bench-create", sqlite_config(folder, "simple")) as system:
            # As in `_Row`: settle the cyclic GC's account of the start-up before the clock.
            # Whether a collection fell into this short round (25-50 ms) depended on how many
            # objects the imports left, not on the code measured (see the commit message).
            gc.collect()
            start = time.perf_counter()
            _start(system, self.actors)
            return time.perf_counter() - start


def _row(key: str, label: str, events: int, run: Callable[[Path], float]) -> Workload:
    w = Workload(key, OURS, label, events, run)
    if isinstance(run, _Row):
        w.latencies = run.latencies
    return w


def workloads() -> list[Workload]:
    """The service rows, in table order."""
    isolated_requests = REQUESTS // 4  # one process per cart is slower: keep a round short
    return [
        _row("service_async", "100 ask_async clients -> 100 carts, 1 persist each (simple)",
             REQUESTS, _Row("simple", "async", SMALL, REQUESTS)),
        _row("service_threads", "16 threads x ask -> 100 carts, 1 persist each (simple)",
             REQUESTS, _Row("simple", "threads", SMALL, REQUESTS)),
        _row("service_read", "100 ask_async clients, read-only answer (simple)",
             REQUESTS * 5, _Row("simple", "async", SMALL, REQUESTS * 5, persist=False)),
        # multiproc-tcp's default config: the carts in shared host processes, one per CPU. The
        # issue's row: 100 carts, as on the simple base (20 until session 10, when one process
        # per cart made 100 processes too many for two cores).
        _row("service_async_mp", "100 ask_async clients -> 100 carts (multiproc-tcp)",
             REQUESTS, _Row("multiproc-tcp", "async", SMALL, REQUESTS)),
        # For comparison, thespian's model: one process per cart (host_processes = 0), 20 carts.
        _row("service_async_mp_isolated",
             "100 ask_async clients -> 20 carts, one process per cart (host_processes = 0)",
             isolated_requests,
             _Row("multiproc-tcp", "async", 20, isolated_requests, host_processes=0)),
        _row("service_threads_mp", "16 threads x ask -> 100 carts (multiproc-tcp)",
             REQUESTS, _Row("multiproc-tcp", "threads", SMALL, REQUESTS)),
        _row("service_async_10k", f"as service_async, {LARGE:,} live carts (simple)",
             REQUESTS, _Row("simple", "async", LARGE, REQUESTS)),
        _row("create_100", f"create + recover {SMALL} carts (simple)", SMALL, _Create(SMALL)),
        _row("create_10k", f"create + recover {LARGE:,} carts (simple)", LARGE, _Create(LARGE)),
    ]
