"""Entities (issue 12): service traffic to many entities of one type through a region.

Each request is one command to one entity (``region.ask_async(id, ...)``), which persists one
event and replies from its handler. SQLite at its durable default (WAL, FULL), as the service
rows. The 100,000-entity row touches each entity once under ``max_active_entities = 10000``
and notes the process's RSS at the end and at its peak (simple base: the hosts run in this
process). The idle row starts 20,000 entities and leaves them idle: the RSS it adds, per entity.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import OURS, Workload
from bench.service import ServiceCart, sqlite_config
from persistent_actors import ActorSystem, EntityRegion

_ASK_TIMEOUT = 300.0
REQUESTS = 4_000
ENTITIES = 10_000
MP_ENTITIES = 1_000  # started one by one over TCP before the clock: keep the set-up short
TOUCHED = 100_000
ACTIVE_LIMIT = 10_000
IDLE = 20_000


def _rss() -> int:
    """The resident set size of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class BenchEntity(ServiceCart):
    """A `ServiceCart` addressed by entity id: ``("add", n)`` persists, "count" answers."""

    def __init__(self, entity_id: str) -> None:
        super().__init__(f"entity-{entity_id}")


def _config(folder: Path, base: str, **sharding: Any) -> dict[str, Any]:
    config = sqlite_config(folder, base)
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0, **sharding}
    return config


async def _clients(region: EntityRegion, ids: list[str], requests: int, *, persist: bool,
                   latencies: list[float]) -> None:
    """100 coroutines send `requests` requests, each to the next id in turn."""
    clients = 100
    per_client = requests // clients

    async def client(c: int) -> None:
        for k in range(per_client):
            n = c * per_client + k
            request: Any = ("add", n) if persist else "count"
            started = time.perf_counter()
            answer = await region.ask_async(ids[n % len(ids)], request, timeout=_ASK_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            if persist and answer != n:
                raise RuntimeError(f"request {request!r} answered {answer!r}: replies crossed")

    await asyncio.gather(*(client(c) for c in range(clients)))


@dataclasses.dataclass
class _Traffic:
    """100 ask_async clients over `entities` running entities, `requests` persists (timed).

    Every entity is started (recovered, empty) before the clock starts: the row measures
    steady traffic, as the service rows do; `entities_wake_10k` measures starting them.
    """

    base: str
    entities: int
    requests: int
    latencies: list[float] = dataclasses.field(default_factory=list)

    def __call__(self, folder: Path) -> float:
        with ActorSystem("bench-entities", _config(folder, self.base)) as system:
            region = system.entities("bench", BenchEntity)
            ids = [f"e{i}" for i in range(self.entities)]
            asyncio.run(_clients(region, ids, self.entities, persist=False, latencies=[]))
            start = time.perf_counter()
            asyncio.run(_clients(region, ids, self.requests, persist=True,
                                 latencies=self.latencies))
            return time.perf_counter() - start


@dataclasses.dataclass
class _Touch:
    """`entities` entities touched once each (one persist) under an active-entity limit."""

    entities: int
    limit: int
    workload: Workload | None = None

    def __call__(self, folder: Path) -> float:
        config = _config(folder, "simple", max_active_entities=self.limit)
        with ActorSystem("bench-touch", config) as system:
            region = system.entities("bench", BenchEntity)
            ids = [f"t{i}" for i in range(self.entities)]
            start = time.perf_counter()
            asyncio.run(_clients(region, ids, self.entities, persist=True, latencies=[]))
            elapsed = time.perf_counter() - start
            gc.collect()
            rss = _rss() / 2**20
        if self.workload is not None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.workload.notes = (f"RSS of the process (host + clients) at the end {rss:.0f} "
                                   f"MiB, peak {peak:.0f} MiB (simple base)")
        return elapsed


@dataclasses.dataclass
class _Idle:
    """`entities` persistent entities started (recovered, empty) and left active and idle.

    Notes what one more idle entity costs: the Python heap it adds (tracemalloc, over 5,000
    more entities started after the clock stopped) and the RSS the timed ones added in the
    first round (later rounds reuse memory freed by earlier ones). Both include the
    `BenchEntity`'s own state (an int and a str, about 150 bytes) and its id string.
    """

    entities: int
    workload: Workload | None = None
    rss: list[float] = dataclasses.field(default_factory=list)
    traced: list[float] = dataclasses.field(default_factory=list)

    def __call__(self, folder: Path) -> float:
        with ActorSystem("bench-idle", _config(folder, "simple")) as system:
            region = system.entities("bench", BenchEntity)
            asyncio.run(_clients(region, [f"warm{i}" for i in range(200)], 200, persist=False,
                                 latencies=[]))
            ids = [f"i{i}" for i in range(self.entities)]
            gc.collect()
            before = _rss()
            start = time.perf_counter()
            asyncio.run(_clients(region, ids, self.entities, persist=False, latencies=[]))
            elapsed = time.perf_counter() - start
            gc.collect()
            self.rss.append((_rss() - before) / self.entities)
            more = [f"m{i}" for i in range(5_000)]
            tracemalloc.start()
            try:
                traced = tracemalloc.get_traced_memory()[0]
                asyncio.run(_clients(region, more, len(more), persist=False, latencies=[]))
                gc.collect()
                self.traced.append((tracemalloc.get_traced_memory()[0] - traced) / len(more))
            finally:
                tracemalloc.stop()
        if self.workload is not None:
            self.workload.notes = (
                f"per idle persistent entity: {min(self.traced):,.0f} bytes of Python heap "
                f"(tracemalloc), {self.rss[0]:,.0f} bytes of RSS (first round); simple base")
        return elapsed


def _wake_setup(folder: Path) -> None:
    """10,000 entities with one event each, then the system is gone (all passivated)."""
    with ActorSystem("bench-wake-setup", _config(folder, "simple")) as system:
        region = system.entities("bench", BenchEntity)
        asyncio.run(_clients(region, [f"w{i}" for i in range(ENTITIES)], ENTITIES,
                             persist=True, latencies=[]))


def _wake(folder: Path) -> float:
    with ActorSystem("bench-wake", _config(folder, "simple")) as system:
        region = system.entities("bench", BenchEntity)
        start = time.perf_counter()
        asyncio.run(_clients(region, [f"w{i}" for i in range(ENTITIES)], ENTITIES,
                             persist=False, latencies=[]))
        return time.perf_counter() - start


def _remember_setup(folder: Path) -> None:
    """10,000 remembered entities with one event each; the system is gone, they are not."""
    config = _config(folder, "simple", remember_entities=True)
    with ActorSystem("bench-remember-setup", config) as system:
        region = system.entities("bench", BenchEntity)
        asyncio.run(_clients(region, [f"r{i}" for i in range(ENTITIES)], ENTITIES,
                             persist=True, latencies=[]))


def _remember(folder: Path) -> float:
    """The host starts its 10,000 remembered entities by itself; then each answers an ask."""
    config = _config(folder, "simple", remember_entities=True)
    with ActorSystem("bench-remember", config) as system:
        start = time.perf_counter()
        region = system.entities("bench", BenchEntity)
        asyncio.run(_clients(region, [f"r{i}" for i in range(ENTITIES)], ENTITIES,
                             persist=False, latencies=[]))
        return time.perf_counter() - start


def workloads() -> list[Workload]:
    """The entity rows, in table order."""
    mp_requests = REQUESTS // 4  # multiproc-tcp is slower: keep a round short
    simple = _Traffic("simple", ENTITIES, REQUESTS)
    multiproc = _Traffic("multiproc-tcp", MP_ENTITIES, mp_requests)
    rows = [
        Workload("entities_async", OURS,
                 f"100 ask_async clients -> {ENTITIES:,} entities, 1 persist each (simple)",
                 REQUESTS, simple),
        Workload("entities_async_mp", OURS,
                 f"100 ask_async clients -> {MP_ENTITIES:,} entities, multiproc-tcp with 2 host "
                 "processes", mp_requests, multiproc),
        Workload("entities_wake_10k", OURS,
                 f"wake {ENTITIES:,} passivated entities (recover 1 event each, simple)",
                 ENTITIES, _wake, setup=_wake_setup, folder="entities-wake"),
        Workload("entities_remember_10k", OURS,
                 f"{ENTITIES:,} remembered entities start with their host (remember_entities, "
                 "recover 1 event each), then answer (simple)",
                 ENTITIES, _remember, setup=_remember_setup, folder="entities-remember"),
    ]
    rows[0].latencies = simple.latencies
    rows[1].latencies = multiproc.latencies
    touch = _Touch(TOUCHED, ACTIVE_LIMIT)
    touched = Workload("entities_100k", OURS,
                       f"{TOUCHED:,} entities touched once, max_active_entities = "
                       f"{ACTIVE_LIMIT:,} (simple)", TOUCHED, touch)
    touch.workload = touched
    idle = _Idle(IDLE)
    idle_row = Workload("entities_idle_20k", OURS,
                        f"start {IDLE:,} entities (recover, answer) and keep them idle: RSS per "
                        "entity in the notes (simple)", IDLE, idle)
    idle.workload = idle_row
    return [*rows, idle_row, touched]
