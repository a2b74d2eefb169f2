"""The seed's StarCraft replay: the game stores only events; other teams build features from them.

Run it with ``make replay`` (or ``python -m samples.replay [--base multiproc-tcp]``).

1. A `Match` actor plays a scripted match: it turns the two players' commands into events
   (actions, units built, resources gathered, each with its game time) and persists them. It
   knows nothing about who reads them.
2. Meanwhile two consumers follow the event log live, built only from it: an APM meter per
   player (an at-least-once projection) and a production-over-time chart kept in an SQLite read
   model (an exactly-once projection: rows and offset commit together).
3. After the match, with the actor system shut down, a third consumer that did not exist while
   the match was played reads the journal file directly and still sees the whole history: a
   resource-efficiency table.
4. The seed's shopping carts: "which carts had a banana removed, and when?" A CRUD table of
   current baskets cannot answer that; the event log can.

The consumers select events by tag. Tags are added by write adapters bound in the journal's
config (`GameTagger`, `CartTagger`), so neither the game nor the cart actor changed for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib
import logging
import random
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, Final

import aiosqlite

from persistent_actors import (
    ActorRef,
    ActorSystem,
    EventEnvelope,
    ExactlyOnceProjection,
    InmemOffsetStore,
    PersistentActor,
    Projection,
    RecoveryCompleted,
    SqliteOffsetStore,
    SyncReadJournal,
    Tagged,
    WriteEventAdapter,
    open_read_journal,
    register,
)
from samples.cart import PUT_IN, TAKE_OUT, Cart, Cmd, Evt

MATCH_ID: Final = "lost-temple-1"
PLAYERS: Final = ("Flash", "Jaedong")
MATCH_SECONDS: Final = 240

# -- the game's events ----------------------------------------------------------------------


@register(manifest="replay.MatchStarted")
@dataclasses.dataclass(frozen=True)
class MatchStarted:
    """The match began on `map_name` (game time `at`, seconds)."""

    players: tuple[str, ...]
    map_name: str
    at: float


@register(manifest="replay.ActionPerformed")
@dataclasses.dataclass(frozen=True)
class ActionPerformed:
    """A player issued an action (select, move, attack, train...)."""

    player: str
    action: str
    at: float


@register(manifest="replay.UnitBuilt")
@dataclasses.dataclass(frozen=True)
class UnitBuilt:
    """A player's unit was built."""

    player: str
    unit: str
    at: float


@register(manifest="replay.ResourcesGathered")
@dataclasses.dataclass(frozen=True)
class ResourcesGathered:
    """A player's workers brought back `amount` of `resource`."""

    player: str
    resource: str
    amount: int
    at: float


@register(manifest="replay.MatchEnded")
@dataclasses.dataclass(frozen=True)
class MatchEnded:
    """The match is over."""

    winner: str
    at: float


# -- the game actor: commands in, events out ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StartMatch:
    """Command: start the match."""

    players: tuple[str, ...]
    map_name: str


@dataclasses.dataclass(frozen=True)
class PlayerCommand:
    """Command: `player` did `kind` ("act", "train" or "gather") at game time `at`."""

    player: str
    kind: str
    detail: str
    at: float
    amount: int = 0


@dataclasses.dataclass(frozen=True)
class EndMatch:
    """Command: the match ends; answered with the number of events stored."""

    winner: str
    at: float


class Match(PersistentActor):
    """One match. Its events are the replay; its state is only what validation needs."""

    def __init__(self, match_id: str) -> None:
        self.match_id = match_id
        self.players: tuple[str, ...] = ()
        self.over = False

    @property
    def persistence_id(self) -> str:
        """One event stream per match."""
        return f"match-{self.match_id}"

    def on_recover(self, message: Any) -> None:
        """Rebuild the validation state."""
        match message:
            case MatchStarted(players=players):
                self.players = players
            case MatchEnded():
                self.over = True
            case RecoveryCompleted():
                pass

    def on_command(self, message: Any) -> None:
        """Validate a command and persist the events it causes."""
        match message:
            case StartMatch(players, map_name) if not self.players:
                self.persist(MatchStarted(players, map_name, 0.0), self.on_recover)
            case PlayerCommand(player=player) if self.over or player not in self.players:
                self.unhandled(message)
            case PlayerCommand(player, "act", action, at):
                self.persist(ActionPerformed(player, action, at), self.on_recover)
            case PlayerCommand(player, "train", unit, at):
                # One command, two events, stored atomically: the click and the unit.
                self.persist_all([ActionPerformed(player, f"train {unit}", at),
                                  UnitBuilt(player, unit, at + _BUILD_TIME[unit])],
                                 self.on_recover)
            case PlayerCommand(player, "gather", resource, at, amount):
                self.persist(ResourcesGathered(player, resource, amount, at), self.on_recover)
            case EndMatch(winner, at) if not self.over:
                self.persist(MatchEnded(winner, at), self._ended)
            case _:
                self.unhandled(message)

    def _ended(self, event: MatchEnded) -> None:
        self.on_recover(event)
        self.sender.tell(self.last_sequence_nr)


_BUILD_TIME: Final = {"SCV": 12.6, "Marine": 15.1, "Siege Tank": 31.5, "Drone": 12.6,
                      "Zergling": 17.6, "Mutalisk": 25.2}
_COST: Final = {"SCV": (50, 0), "Marine": (50, 0), "Siege Tank": (150, 100), "Drone": (50, 0),
                "Zergling": (25, 0), "Mutalisk": (100, 100)}
_BUILDS: Final = {"Flash": ("SCV", "SCV", "Marine", "SCV", "Siege Tank", "Marine"),
                  "Jaedong": ("Drone", "Drone", "Zergling", "Drone", "Mutalisk", "Zergling")}
_APM: Final = {"Flash": 70, "Jaedong": 95}  # a relaxed match: every click is an event
_ACTIONS: Final = ("select", "move", "attack", "hotkey", "rally")


def scripted_match(seconds: int = MATCH_SECONDS, seed: int = 2009) -> list[PlayerCommand]:
    """The players' commands during the first `seconds`, in game-time order (deterministic)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible script, not a secret
    commands: list[PlayerCommand] = []
    for player in PLAYERS:
        per_second = _APM[player] / 60
        at = 0.0
        while (at := at + rng.expovariate(per_second)) < seconds:
            commands.append(PlayerCommand(player, "act", rng.choice(_ACTIONS), round(at, 1)))
        builds = _BUILDS[player]
        for i, at in enumerate(range(8, seconds - 40, 9)):
            commands.append(PlayerCommand(player, "train", builds[i % len(builds)], float(at)))
        for at in range(5, seconds, 6):
            commands.append(PlayerCommand(player, "gather", "minerals", float(at), 40))
            if at > 60 and at % 12 == 5:
                commands.append(PlayerCommand(player, "gather", "gas", float(at), 24))
    commands.sort(key=lambda c: (c.at, c.player))
    return commands


# -- tags, added by config: the game actor never heard of them ---------------------------------


class GameTagger(WriteEventAdapter):
    """Tags every game event "game"; units also "production", gathering also "economy"."""

    def to_journal(self, event: Any) -> Any:
        """Return the event wrapped with its tags."""
        tags = ["game"]
        if isinstance(event, UnitBuilt):
            tags.append("production")
        elif isinstance(event, ResourcesGathered):
            tags.append("economy")
        return Tagged(event, tags)


class CartTagger(WriteEventAdapter):
    """Tags cart events "cart"; a removal also "removed"."""

    def to_journal(self, event: Any) -> Any:
        """Return the event wrapped with its tags."""
        if not isinstance(event, Evt):
            return event
        return Tagged(event, ["cart", "removed"] if TAKE_OUT in event.data else ["cart"])


def make_config(path: Path, base: str) -> dict[str, Any]:
    """SQLite journal with the two taggers bound (NORMAL: fine for a demo, see the README)."""
    return {
        "actor_system": {"base": base},
        "persistence": {"journal": {
            "plugin": "sqlite", "path": str(path), "synchronous": "NORMAL",
            "event_adapters": {"game": f"{__name__}:GameTagger", "cart": f"{__name__}:CartTagger"},
            "event_adapter_bindings": {
                "replay.ActionPerformed": "game", "replay.UnitBuilt": "game",
                "replay.ResourcesGathered": "game", "replay.MatchStarted": "game",
                "replay.MatchEnded": "game", "cart.Evt": "cart",
            },
        }},
    }


# -- consumer 1: an APM meter (at-least-once projection, in memory) ------------------------------


class ApmMeter:
    """Actions per minute per player, from ActionPerformed events."""

    def __init__(self) -> None:
        self.actions: dict[str, Counter[int]] = defaultdict(Counter)

    def handle(self, envelope: EventEnvelope) -> None:
        """Count an action in its minute."""
        if isinstance(envelope.event, ActionPerformed):
            self.actions[envelope.event.player][int(envelope.event.at // 60)] += 1

    def table(self) -> list[str]:
        """Minute by minute, then the whole match."""
        minutes = range(1 + max((m for c in self.actions.values() for m in c), default=0))
        rows = [f"{'minute':>8} | " + " | ".join(f"{p:>8}" for p in PLAYERS)]
        rows += [f"{m:>8} | " + " | ".join(f"{self.actions[p][m]:>8}" for p in PLAYERS)
                 for m in minutes]
        rows.append(f"{'average':>8} | " + " | ".join(
            f"{sum(self.actions[p].values()) / len(minutes):>8.0f}" for p in PLAYERS))
        return rows


# -- consumer 2: production over time (exactly-once projection into SQLite) -----------------------


async def record_production(envelope: EventEnvelope, db: aiosqlite.Connection) -> None:
    """Write a built unit into the read model, in the projection's transaction."""
    await db.execute("CREATE TABLE IF NOT EXISTS production "
                     "(player TEXT, unit TEXT, minute INTEGER, sequence_nr INTEGER PRIMARY KEY)")
    match envelope.event:
        case UnitBuilt(player, unit, at):
            await db.execute("INSERT INTO production VALUES (?, ?, ?, ?)",
                             (player, unit, int(at // 60), envelope.sequence_nr))
        case MatchEnded():
            await db.execute("CREATE TABLE IF NOT EXISTS finished (match TEXT)")
            await db.execute("INSERT INTO finished VALUES (?)", (envelope.persistence_id,))


async def production_table(store: SqliteOffsetStore, minutes: int) -> list[str]:
    """Units built per player in each of the first `minutes`, from the read model."""
    db = await store.connection()
    rows = await db.execute_fetchall(
        "SELECT minute, player, unit, count(*) FROM production "
        "GROUP BY minute, player, unit ORDER BY minute, player, unit")
    cells: dict[tuple[int, str], list[str]] = defaultdict(list)
    for minute, player, unit, count in rows:
        cells[(minute, player)].append(f"{count} {unit}")
    lines = [(f"{'minute':>8} | " + " | ".join(f"{p:<32}" for p in PLAYERS)).rstrip()]
    for minute in range(minutes):
        lines.append(f"{minute:>8} | " + " | ".join(
            f"{', '.join(cells[(minute, p)]) or '-':<32}" for p in PLAYERS).rstrip())
    return lines


async def until_match_end(source: AsyncGenerator[EventEnvelope, None],
                          ) -> AsyncGenerator[EventEnvelope, None]:
    """A live query that ends after the match's last event, so a projection's run returns."""
    async with contextlib.aclosing(source):
        async for envelope in source:
            yield envelope
            if isinstance(envelope.event, MatchEnded):
                return


async def watch_match(system: ActorSystem, match: ActorRef, commands: Sequence[Any],
                      read_model: Path) -> tuple[list[str], list[str]]:
    """Play the match while the two live consumers follow the log; return their tables."""
    apm = ApmMeter()
    store = SqliteOffsetStore(read_model, synchronous="NORMAL")
    async with system.read_journal() as journal:
        # The meter keeps its counts in memory, so its offset lives in memory too.
        meter = Projection(
            "apm-meter", lambda offset: until_match_end(journal.events_by_tag("game", offset)),
            apm.handle, InmemOffsetStore())
        chart = ExactlyOnceProjection(
            "production-chart",
            lambda offset: until_match_end(journal.events_by_tag("game", offset)),
            record_production, store)
        _, _, stored = await asyncio.wait_for(asyncio.gather(
            meter.run(), chart.run(), asyncio.to_thread(_play, match, commands)), 120)
    print(f"the match actor stored {stored} events; both consumers followed them live\n")
    try:
        minutes = 1 + int(max(c.at for c in commands) // 60)
        return apm.table(), await production_table(store, minutes)
    finally:
        await store.close()


def _play(match: ActorRef, commands: Sequence[Any]) -> int:
    match.tell(StartMatch(PLAYERS, "Lost Temple"))
    for command in commands:
        match.tell(command)
    stored: int = match.ask(EndMatch("Flash", commands[-1].at + 1), timeout=60)
    return stored


# -- consumer 3: added after the match, from the journal file alone -------------------------------


def efficiency_table(config: dict[str, Any]) -> tuple[int, list[str]]:
    """Resources gathered vs spent per player, from the whole history (no actor system)."""
    gathered: dict[str, Counter[str]] = defaultdict(Counter)
    spent: dict[str, Counter[str]] = defaultdict(Counter)
    with SyncReadJournal(open_read_journal(config)) as journal:
        envelopes = journal.current_events_by_persistence_id(f"match-{MATCH_ID}")
    for envelope in envelopes:
        match envelope.event:
            case ResourcesGathered(player, resource, amount, _):
                gathered[player][resource] += amount
            case UnitBuilt(player, unit, _):
                minerals, gas = _COST[unit]
                spent[player]["minerals"] += minerals
                spent[player]["gas"] += gas
    lines = [f"{'player':>8} | {'gathered':>15} | {'spent':>15} | {'spent/gathered':>14}"]
    for player in PLAYERS:
        got, used = gathered[player], spent[player]
        ratio = (used.total() / got.total()) if got.total() else 0.0
        lines.append(f"{player:>8} | {got['minerals']:>6} m {got['gas']:>5} g | "
                     f"{used['minerals']:>6} m {used['gas']:>5} g | {ratio:>14.0%}")
    return len(envelopes), lines


# -- the cart: which carts had a banana removed, and when? --------------------------------------


class UserCart(Cart):
    """The seed's cart, one event stream per user (the cart actor itself is unchanged)."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user

    @property
    def persistence_id(self) -> str:  # type: ignore[override]
        """One event stream per user."""
        return f"cart-{self.user}"


CART_SESSIONS: Final = {
    "alice": [("banana", PUT_IN), ("apple", PUT_IN), ("banana", TAKE_OUT)],
    "bob": [("banana", PUT_IN), ("banana", TAKE_OUT), ("banana", PUT_IN), ("milk", PUT_IN)],
    "carol": [("apple", PUT_IN), ("apple", TAKE_OUT), ("bread", PUT_IN)],
}


def banana_removals(system: ActorSystem) -> list[str]:
    """Run the carts, then ask the log which of them had a banana removed, and when."""
    for user, session in CART_SESSIONS.items():
        cart = system.actor_of(UserCart, user, name=f"cart-{user}")
        for item, verb in session:
            cart.tell(Cmd(f"{item} {verb}"))
        cart.ask("print", timeout=10)  # answered after every command before it was handled

    async def query() -> list[EventEnvelope]:
        async with system.read_journal() as journal:
            return [e async for e in journal.current_events_by_tag("removed")
                    if "banana" in e.event.data]

    lines = [f"{'cart':>6} | {'event':>5} | {'when (local time)':<23}"]
    for envelope in asyncio.run(query()):
        when = datetime.datetime.fromtimestamp(envelope.timestamp).isoformat(" ", "milliseconds")
        lines.append(f"{envelope.persistence_id.removeprefix('cart-'):>6} | "
                     f"{envelope.sequence_nr:>5} | {when:<23}")
    return lines


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] = ()) -> int:
    """Play, watch, analyse; print the tables."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m samples.replay", description=__doc__)
    parser.add_argument("--base", default="simple", choices=["simple", "multiproc-tcp"])
    parser.add_argument("--seconds", type=int, default=MATCH_SECONDS,
                        help=f"length of the match in game seconds (default {MATCH_SECONDS})")
    parser.add_argument("--data", metavar="FOLDER",
                        help="keep the journal (events.db) in FOLDER, a new or empty one (the "
                             "match it holds is over), e.g. to look at it with "
                             "`persistent-actors journal`; default: a temporary folder")
    args = parser.parse_args(list(argv))
    commands = scripted_match(args.seconds)
    with tempfile.TemporaryDirectory(prefix="replay-") as scratch:
        folder = args.data or scratch
        if (Path(folder) / "events.db").exists():
            # The match recorded there is over: the recovered Match takes no more commands.
            parser.error(f"--data {folder}: it holds a played match already (events.db); "
                         "give a new or empty folder")
        Path(folder).mkdir(parents=True, exist_ok=True)
        config = make_config(Path(folder) / "events.db", args.base)
        with ActorSystem("replay", config=config) as system:
            match = system.actor_of(Match, MATCH_ID, name="match")
            apm, production = asyncio.run(
                watch_match(system, match, commands, Path(folder) / "read-model.db"))
            print("APM per player (live consumer 1: at-least-once projection)")
            print("\n".join(apm), end="\n\n")
            print("Production over time (live consumer 2: exactly-once projection into SQLite)")
            print("\n".join(production), end="\n\n")
            removals = banana_removals(system)
        count, efficiency = efficiency_table(config)
        print(f"Resource efficiency (consumer 3, written after the match: it replayed all "
              f"{count} events from the journal file, with no actor system running)")
        print("\n".join(efficiency), end="\n\n")
        print("Which carts had a banana removed, and when? (a CRUD table of baskets only knows "
              "the end: bob's basket holds a banana again)")
        print("\n".join(removals))
    return 0


if __name__ == "__main__":
    # Run the module's own import, not __main__: the adapters in the config name this module,
    # and two copies of the event classes would not match each other's isinstance checks.
    sys.exit(importlib.import_module("samples.replay").main(sys.argv[1:]))
