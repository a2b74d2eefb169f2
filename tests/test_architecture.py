"""The library's import layers, checked on every `make test`.

Every module of `persistent_actors` sits in one layer; a module imports only from its own layer
or the layers below it, and no group of modules imports itself in a circle. Imports inside
functions count (they are import cycles postponed, not avoided); imports under
``if TYPE_CHECKING:`` do not, since they never run. The shipped plugins import only the public
plugin API, so a third party can write a plugin the same way, and the core never imports them.

A new module must be added to `LAYERS` (the test names it otherwise): deciding where it belongs
is the point.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from persistent_actors.testing import JournalSpec, ReadJournalSpec, SnapshotStoreSpec
from persistent_actors.testing.journal_spec import JournalSpec as Journal
from persistent_actors.testing.query_spec import ReadJournalSpec as Query
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec as Snapshots

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("persistent_actors", "journal_plugins")

# Bottom to top, as the README's Layout section draws them. Patterns match dotted module names
# ("persistent_actors" is the package itself).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors and stored data", (
        "persistent_actors.errors", "persistent_actors.stored", "persistent_actors._compact_pickle",
    )),
    ("supervision options", ("persistent_actors.supervision",)),
    ("serialization", ("persistent_actors._serialization",)),
    ("the plugin API", (
        "persistent_actors.event_log", "persistent_actors.journal", "persistent_actors.snapshot",
    )),
    ("messages, recovery and retention", (
        "persistent_actors.messages", "persistent_actors.recovery", "persistent_actors.retention",
        "persistent_actors._replay_filter",
    )),
    ("event adapters", ("persistent_actors.adapters",)),
    ("the runtime's messages", ("persistent_actors._protocol", "persistent_actors._sharding")),
    ("refs and actors", (
        "persistent_actors._actor", "persistent_actors._event_stream", "persistent_actors.timers",
        "persistent_actors.pipe_to",
    )),
    ("the persistence machine", ("persistent_actors._eventsourced",)),
    ("PersistentActor", ("persistent_actors._persistent_actor", "persistent_actors.at_least_once")),
    ("config", ("persistent_actors._config",)),
    ("the thespian actors", ("persistent_actors._thespian", "persistent_actors._thespian.*")),
    ("the external side", ("persistent_actors._driver", "persistent_actors._endpoint")),
    ("the read side", ("persistent_actors.query", "persistent_actors.projection")),
    ("entity regions", ("persistent_actors._region",)),
    ("the cluster's routing, leases and hosts", (
        "persistent_actors.cluster", "persistent_actors.cluster._*",
    )),
    ("the front end", ("persistent_actors._system", "persistent_actors")),
    ("the cluster node", ("persistent_actors.cluster.node",)),
    ("testing", ("persistent_actors.testing", "persistent_actors.testing.*")),
    ("the command line", (
        "persistent_actors.cli", "persistent_actors.cli.*", "persistent_actors.__main__",
    )),
)

# What a plugin may import of the library: the plugin API, nothing private.
PLUGIN_API = (
    "persistent_actors.errors", "persistent_actors.stored", "persistent_actors.journal",
    "persistent_actors.snapshot", "persistent_actors.event_log",
)

# Forbidden even under TYPE_CHECKING: the machine knows the actor by a Protocol only.
FORBIDDEN_TYPE_IMPORTS = (
    ("persistent_actors._eventsourced", "persistent_actors._persistent_actor"),
)


# -- reading imports ---------------------------------------------------------------------------
def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted name -> file, for every module of `packages` under `root`."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                inside.update(id(n) for n in ast.walk(statement))
    return inside


def imported_names(source: str, module: str, *, is_package: bool) -> Iterator[tuple[str, bool]]:
    """Every name `module` imports, anywhere in it, with True if only under TYPE_CHECKING.

    ``from a import b`` yields ``a.b`` (which resolves to module ``a.b`` or to ``a``).
    """
    tree = ast.parse(source)
    type_only = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in type_only
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                yield f"{base}.{alias.name}", id(node) in type_only


def resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module of ours that importing `name` loads (its longest known prefix), or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: Mapping[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(runtime imports, type-only imports) between `modules`, as adjacency sets."""
    runtime: dict[str, set[str]] = {name: set() for name in modules}
    typing_only: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for imported, type_only in imported_names(path.read_text(), name, is_package=is_package):
            target = resolve(imported, modules)
            if target is not None and target != name:
                (typing_only if type_only else runtime)[name].add(target)
    for name in modules:
        typing_only[name] -= runtime[name]
    return runtime, typing_only


# -- the rules ---------------------------------------------------------------------------------
def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int | None:
    """The index of `module`'s layer in `LAYERS`, or None if it has none."""
    for number, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return number
    return None


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """Imports of `persistent_actors` modules that reach a higher layer."""
    found = []
    for source, targets in sorted(graph.items()):
        source_layer = layer_of(source)
        if source_layer is None:
            continue
        for target in sorted(targets):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer > source_layer:
                found.append(f"{source} ({LAYERS[source_layer][0]}) imports {target} "
                             f"({LAYERS[target_layer][0]})")
    return found


def plugin_violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Plugins importing more than the plugin API; the core importing a plugin."""
    found = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            plugin_source = source.startswith("journal_plugins")
            plugin_target = target.startswith("journal_plugins")
            if plugin_source and not plugin_target and target not in PLUGIN_API:
                found.append(f"plugin module {source} imports {target}")
            if not plugin_source and plugin_target:
                found.append(f"library module {source} imports the plugin {target}")
    return found


# -- the tests ---------------------------------------------------------------------------------
MODULES = find_modules(ROOT, PACKAGES)
RUNTIME, TYPE_ONLY = import_graph(MODULES)
ALL_IMPORTS = {name: RUNTIME[name] | TYPE_ONLY[name] for name in MODULES}


def test_every_library_module_has_a_layer() -> None:
    missing = [m for m in MODULES if m.startswith("persistent_actors") and layer_of(m) is None]
    assert missing == [], f"add these modules to LAYERS in {__file__}: {missing}"


def test_no_import_cycles() -> None:
    assert cycles(RUNTIME) == []


def test_no_upward_imports() -> None:
    assert upward_imports(RUNTIME) == []


def test_plugins_use_only_the_plugin_api_and_the_core_never_imports_a_plugin() -> None:
    # Type-only imports too: a third party copying a plugin copies its annotations.
    assert plugin_violations(ALL_IMPORTS) == []


def test_forbidden_imports_even_for_type_checking() -> None:
    found = [(a, b) for a, b in FORBIDDEN_TYPE_IMPORTS if b in ALL_IMPORTS[a]]
    assert found == []


# -- the checker itself ------------------------------------------------------------------------
def test_function_level_and_relative_imports_count_but_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _actor\n"
        "if TYPE_CHECKING:\n"
        "    from persistent_actors._system import ActorSystem\n"
        "def f() -> None:\n"
        "    from persistent_actors._endpoint import Endpoint\n"
    )
    names = dict(imported_names(source, "persistent_actors.messages", is_package=False))
    assert names == {
        "typing.TYPE_CHECKING": False,
        "persistent_actors._actor": False,
        "persistent_actors._system.ActorSystem": True,
        "persistent_actors._endpoint.Endpoint": False,
    }
    assert resolve("persistent_actors._endpoint.Endpoint", MODULES) == "persistent_actors._endpoint"


def test_the_rules_catch_an_upward_import_a_cycle_and_a_private_plugin_import() -> None:
    graph = {name: set(targets) for name, targets in RUNTIME.items()}
    graph["persistent_actors.errors"].add("persistent_actors._system")
    graph["journal_plugins.inmem"].add("persistent_actors._config")
    assert "persistent_actors.errors (errors and stored data) imports persistent_actors._system " \
           "(the front end)" in upward_imports(graph)
    assert any("persistent_actors.errors" in cycle for cycle in cycles(graph))
    assert plugin_violations(graph) == [
        "plugin module journal_plugins.inmem imports persistent_actors._config"]


def test_the_test_kit_imports_without_pytest() -> None:
    # An application installed without the dev extra configures
    # "persistent_actors.testing:TestJournal" and uses TestProbe; only the TCKs need pytest.
    code = (
        "import sys; sys.modules['pytest'] = None\n"  # None in sys.modules: import fails
        "from persistent_actors.testing import PersistenceTestKit, TestJournal, TestProbe\n"
        "try:\n"
        "    from persistent_actors.testing import JournalSpec\n"
        "except ImportError:\n"
        "    print('tck needs pytest')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tck needs pytest"


def test_the_tcks_are_importable_from_the_test_kit() -> None:
    assert (JournalSpec, ReadJournalSpec, SnapshotStoreSpec) == (Journal, Query, Snapshots)
