"""Configuration: mappings and TOML files, validated up front with errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.inmem import InmemJournal, InmemSnapshotStore
from persistent_actors import CONFIG_ENV_VAR, ActorSystem, ConfigError, PluginError
from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, Settings, load_settings
from tests.conftest import system_config


class RenamedJournal(InmemJournal):
    """A journal given as "module:Class" (the inmem one under another name)."""


class RenamedSnapshotStore(InmemSnapshotStore):
    """A snapshot store given as "module:Class"."""


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own PERSISTENT_ACTORS_CONFIG must not leak into these tests.
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


TOML = """
[actor_system]
base = "multiproc-tcp"
admin_port = 19555

[persistence.journal]
plugin = "inmem"

[persistence.snapshot_store]
plugin = "tests.test_config:RenamedSnapshotStore"

[persistence.journals.audit]
plugin = "tests.test_config:RenamedJournal"
"""


def check_toml_settings(settings: Settings) -> None:
    assert settings.base == "multiproc-tcp"
    assert settings.thespian_base == "multiprocTCPBase"
    assert settings.admin_port == 19555
    assert settings.journals["default"].spec == "inmem"
    assert settings.snapshot_stores["default"].spec == "tests.test_config:RenamedSnapshotStore"
    audit = settings.plugin(JOURNAL, "audit")
    assert (audit.kind, audit.plugin_id, audit.spec) == (
        "journal", "audit", "tests.test_config:RenamedJournal")


# -- accepted forms --------------------------------------------------------------------------
def test_defaults() -> None:
    for settings in (load_settings(None), load_settings({})):
        assert settings.base == "simple"
        assert settings.thespian_base == "simpleSystemBase"
        assert settings.admin_port is None
        assert settings.plugin(JOURNAL, None).spec == "inmem"
        assert settings.plugin(SNAPSHOT_STORE, None).spec == "inmem"


def test_mapping() -> None:
    settings = load_settings({
        "actor_system": {"base": "multiproc-tcp", "admin_port": 19555},
        "persistence": {
            "journal": {"plugin": "inmem"},
            "snapshot_store": {"plugin": "tests.test_config:RenamedSnapshotStore"},
            "journals": {"audit": {"plugin": "tests.test_config:RenamedJournal"}},
        },
    })
    check_toml_settings(settings)


def test_toml_file_as_str_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, TOML)
    check_toml_settings(load_settings(path))
    check_toml_settings(load_settings(str(path)))


def test_plugin_settings_are_kept_beside_plugin() -> None:
    settings = load_settings({"persistence": {"journal": {"plugin": "sqlite", "path": "x.db"}}})
    journal = settings.plugin(JOURNAL, None)
    assert journal.spec == "sqlite"
    assert journal.settings == {"path": "x.db"}


def test_missing_plugin_key_means_inmem() -> None:
    settings = load_settings({"persistence": {"journal": {}}})
    assert settings.plugin(JOURNAL, None).spec == "inmem"


def test_a_plugin_name_is_no_plugin_id_without_its_section() -> None:
    # As Akka's JournalPluginId names a config path: "inmem" fell back to the in-memory plugin
    # (events silently in memory beside a SQLite default), "sqlite" to one without a path.
    settings = load_settings({"persistence": {"journal": {"plugin": "sqlite", "path": "x.db"}}})
    with pytest.raises(ConfigError, match=r"no journal named 'inmem': add a "
                                          r"\[persistence\.journals\.inmem\] section"):
        settings.plugin(JOURNAL, "inmem")
    with pytest.raises(ConfigError, match=r"\[persistence\.snapshot_stores\.sqlite\]"):
        settings.plugin(SNAPSHOT_STORE, "sqlite")
    configured = load_settings({"persistence": {"journals": {"inmem": {"plugin": "inmem"}}}})
    assert configured.plugin(JOURNAL, "inmem").spec == "inmem"


def test_unknown_plugin_id_names_the_section() -> None:
    settings = load_settings({"persistence": {"journals": {"audit": {}}}})
    with pytest.raises(ConfigError, match=r"persistence\.journals\.nope.*\['audit', 'default'\]"):
        settings.plugin(JOURNAL, "nope")
    with pytest.raises(ConfigError, match=r"persistence\.snapshot_stores\.nope"):
        settings.plugin(SNAPSHOT_STORE, "nope")


def test_env_var_names_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, str(write(tmp_path, TOML)))
    check_toml_settings(load_settings(None))
    # An explicit config wins over the environment.
    assert load_settings({}).base == "simple"


def test_env_var_used_by_actor_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[persistence.journal]\nplugin = "tests.test_config:RenamedJournal"\n')
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    with ActorSystem("from-env") as system:
        assert system.settings.base == "simple"
        assert system.settings.journals["default"].spec == "tests.test_config:RenamedJournal"


def test_empty_env_var_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, "")
    assert load_settings(None).base == "simple"


def test_env_var_naming_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(None)
    assert str(missing) in str(info.value)


def test_a_config_path_that_cannot_be_read_is_a_config_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Raw IsADirectoryError / UnicodeDecodeError escaped (the latter naming no file).
    with pytest.raises(ConfigError, match=rf"config file '{tmp_path}' cannot be read"):
        load_settings(tmp_path)
    with pytest.raises(ConfigError, match="config file path is empty"):
        load_settings("")
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[actor_system]\nbase = "simple" # caf\xe9\n'.encode("latin-1"))
    monkeypatch.setenv(CONFIG_ENV_VAR, str(latin))
    with pytest.raises(ConfigError, match=rf"config file '{latin}' is not UTF-8 text"):
        load_settings(None)


@pytest.mark.parametrize(("value", "expected"), [
    ("::1", "IPv4 only"), ("localhost", "must be an IPv4 address string"),
    ("", "must be an IPv4 address string"), (7, "must be an IPv4 address string")])
def test_bind_address_must_be_an_ipv4_address(value: Any, expected: str) -> None:
    # "::1" passed as loopback, then failed as an admin port "in use", or with gaierror.
    with pytest.raises(ConfigError, match=rf"actor_system\.bind_address .*{expected}"):
        load_settings({"actor_system": {"base": "multiproc-tcp", "bind_address": value}})


# -- errors ----------------------------------------------------------------------------------
def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"actor_sytem": {}})
    message = str(info.value)
    assert "actor_sytem" in message
    assert "'actor_system'" in message
    assert "'persistence'" in message


def test_unknown_actor_system_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"actor_system": {"bsae": "simple"}})
    message = str(info.value)
    assert "actor_system.bsae" in message
    assert "'admin_port'" in message
    assert "'base'" in message


def test_unknown_persistence_key() -> None:
    with pytest.raises(ConfigError, match=r"persistence\.jornal.*'journal'.*'snapshot_store'"):
        load_settings({"persistence": {"jornal": {}}})


def test_unknown_base() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"actor_system": {"base": "multiprocQueueBase"}})
    message = str(info.value)
    assert "actor_system.base" in message
    assert "'multiprocQueueBase'" in message
    assert "'multiproc-tcp'" in message
    assert "'simple'" in message


@pytest.mark.parametrize("base", [["simple"], {"x": 1}, 1, None])
def test_base_of_wrong_type(base: Any) -> None:
    with pytest.raises(ConfigError, match=r"actor_system\.base"):
        load_settings({"actor_system": {"base": base}})


@pytest.mark.parametrize("port", ["19500", 19500.0, True, 80, 0, -1, 70000, [19500]])
def test_bad_admin_port(port: Any) -> None:
    with pytest.raises(ConfigError, match=r"actor_system\.admin_port.*1024\.\.65535"):
        load_settings({"actor_system": {"base": "multiproc-tcp", "admin_port": port}})


def test_admin_port_from_toml_of_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[actor_system]\nadmin_port = "19500"\n')
    with pytest.raises(ConfigError, match="admin_port"):
        load_settings(path)


@pytest.mark.parametrize(("config", "key"), [
    ({"actor_system": "simple"}, "actor_system"),
    ({"persistence": 5}, "persistence"),
    ({"persistence": {"journal": "sqlite"}}, "persistence.journal"),
    ({"persistence": {"journals": {"audit": "sqlite"}}}, "persistence.journals.audit"),
    ({"persistence": {"snapshot_stores": []}}, "persistence.snapshot_stores"),
])
def test_sections_must_be_tables(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match="must be a table") as info:
        load_settings(config)
    assert repr(key) in str(info.value)


def test_root_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["journal", "snapshot_store"])
def test_unknown_plugin_lists_available(kind: str) -> None:
    with pytest.raises(PluginError) as info:
        load_settings({"persistence": {kind: {"plugin": "cassandra"}}})
    message = str(info.value)
    assert "'cassandra'" in message
    assert "'inmem'" in message
    assert "'sqlite'" in message
    assert "'postgres'" in message
    assert isinstance(info.value, ConfigError)  # PluginError is a ConfigError


def test_unknown_plugin_in_extra_journal() -> None:
    with pytest.raises(PluginError, match="'cassandra'"):
        load_settings({"persistence": {"journals": {"audit": {"plugin": "cassandra"}}}})


@pytest.mark.parametrize("spec", [42, "", None])
def test_plugin_must_be_a_non_empty_string(spec: Any) -> None:
    with pytest.raises(ConfigError, match=r"persistence\.journal\.plugin"):
        load_settings({"persistence": {"journal": {"plugin": spec}}})


@pytest.mark.parametrize("spec", [
    "no_such_module_xyz:Journal",
    "journal_plugins.inmem:NoSuchJournal",
    "tests.test_config:RenamedJournal.missing",
])
def test_module_class_spec_that_does_not_exist(spec: str) -> None:
    with pytest.raises(PluginError, match="cannot load journal plugin") as info:
        load_settings({"persistence": {"journal": {"plugin": spec}}})
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(("kind", "spec", "expected"), [
    ("journal", "collections:OrderedDict", "Journal"),
    ("journal", "os:getcwd", "Journal"),
    ("journal", "journal_plugins.inmem:InmemSnapshotStore", "Journal"),
    ("snapshot_store", "journal_plugins.inmem:InmemJournal", "SnapshotStore"),
    ("snapshot_store", "tests.test_config:RenamedJournal", "SnapshotStore"),
])
def test_spec_naming_the_wrong_class(kind: str, spec: str, expected: str) -> None:
    with pytest.raises(PluginError, match=f"is not a {expected} subclass") as info:
        load_settings({"persistence": {kind: {"plugin": spec}}})
    assert repr(spec) in str(info.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "config.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(missing)
    assert str(missing) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[actor_system\nbase = simple\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_errors_in_toml_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[actor_system]\nbase = "simple"\ncolour = "blue"\n')
    with pytest.raises(ConfigError, match=r"actor_system\.colour"):
        load_settings(path)


# -- through ActorSystem ---------------------------------------------------------------------
def test_actor_system_rejects_bad_config_before_starting() -> None:
    with pytest.raises(ConfigError, match=r"actor_system\.base"):
        ActorSystem("bad", config={"actor_system": {"base": "nope"}})
    with pytest.raises(PluginError, match="'nope'"):
        ActorSystem("bad", config={"persistence": {"journal": {"plugin": "nope"}}})


def test_plugin_that_rejects_its_settings_fails_startup(base: str) -> None:
    config = system_config(base, journal={"plugin": "inmem", "colour": "blue"})
    with pytest.raises(ConfigError, match="colour"):
        ActorSystem("bad-plugin", config=config)


def test_module_class_plugin_runs(base: str) -> None:
    config = system_config(base, journal={"plugin": "tests.test_config:RenamedJournal"},
                           snapshot_store={"plugin": "tests.test_config:RenamedSnapshotStore"})
    with ActorSystem("custom", config=config) as system:
        assert system.settings.journals["default"].spec == "tests.test_config:RenamedJournal"


# -- numbers are finite and in range (defect 4) ----------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300, 0, -1.0,
                                   86_401])
def test_recovery_event_timeout_must_be_finite_and_in_range(value: float) -> None:
    config = {"persistence": {"recovery_event_timeout": value}}
    with pytest.raises(ConfigError, match=r"persistence\.recovery_event_timeout.*86400"):
        load_settings(config)
    with pytest.raises(ConfigError, match=r"persistence\.recovery_event_timeout"):
        ActorSystem("bad", config=config)


@pytest.mark.parametrize("value", [0, -5, 10**30, 2.0, float("nan"), True])
def test_internal_stash_capacity_must_be_an_int_in_range(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"persistence\.internal_stash_capacity"):
        load_settings({"persistence": {"internal_stash_capacity": value}})


def test_numbers_at_the_bounds_are_accepted() -> None:
    settings = load_settings({"persistence": {"recovery_event_timeout": 86_400,
                                              "internal_stash_capacity": 1}})
    assert settings.recovery_event_timeout == 86_400.0
    assert settings.internal_stash_capacity == 1


@pytest.mark.parametrize(("key", "value"), [("busy_timeout", 10**30), ("busy_timeout", -1),
                                            ("replay_page_size", 10**12),
                                            ("replay_page_size", 0)])
def test_sqlite_numbers_must_be_in_range(tmp_path: Path, key: str, value: int) -> None:
    config = {"persistence": {"journal": {"plugin": "sqlite", "path": str(tmp_path / "j.db"),
                                          key: value}}}
    with pytest.raises(ConfigError, match=rf"persistence\.journal.*{key}.*\.\."):
        load_settings(config)


# -- every configured plugin's settings are checked at start (defect 11) ---------------------
@pytest.mark.parametrize("section", ["journals", "snapshot_stores"])
def test_an_extra_plugins_unknown_setting_fails_at_actor_system_start(
        tmp_path: Path, section: str) -> None:
    extra = {"plugin": "sqlite", "path": str(tmp_path / "x.db"), "colour": "blue"}
    config = {"persistence": {section: {"audit": extra}}}
    with pytest.raises(ConfigError, match=rf"persistence\.{section}\.audit.*'colour'"):
        ActorSystem("bad", config=config)


def test_a_test_plugins_wrapped_settings_are_checked_at_start(tmp_path: Path) -> None:
    wrapped = {"plugin": "sqlite", "path": str(tmp_path / "x.db"), "synchronous": "sometimes"}
    config = {"persistence": {"journals": {"kit": {
        "plugin": "persistent_actors.testing:TestJournal", "wrapped": wrapped}}}}
    with pytest.raises(ConfigError, match=r"persistence\.journals\.kit.*synchronous"):
        load_settings(config)


def test_host_processes_defaults_to_the_cpus_like_sharding() -> None:
    cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use
    assert load_settings({}).host_processes == cpus
    settings = load_settings({"actor_system": {"base": "multiproc-tcp"}})
    assert settings.host_processes == settings.sharding.host_processes == cpus
    settings = load_settings({"actor_system": {"base": "multiproc-tcp", "host_processes": 4}})
    assert settings.host_processes == 4


def test_host_processes_default_counts_the_cpus_the_process_may_use() -> None:
    # A process pinned to one CPU (a container's cpuset, taskset) gets one host per type,
    # whatever the machine has.
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from persistent_actors._config import load_settings; "
              "s = load_settings({}); print(s.host_processes, s.sharding.host_processes)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["1", "1"]


def test_host_processes_zero_still_means_one_process_per_actor() -> None:
    settings = load_settings({"actor_system": {"base": "multiproc-tcp", "host_processes": 0}})
    assert settings.host_processes == 0


@pytest.mark.parametrize("value", [-1, 1025, 2.0, "2", True, None, [2]])
def test_bad_host_processes(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"actor_system\.host_processes.*0\.\.1024"):
        load_settings({"actor_system": {"base": "multiproc-tcp", "host_processes": value}})


def test_host_processes_from_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[actor_system]\nbase = "multiproc-tcp"\nhost_processes = 3\n')
    assert load_settings(path).host_processes == 3


@pytest.mark.parametrize("key", ["journals", "snapshot_stores"])
@pytest.mark.parametrize("plugin_id", ["default", ""])
def test_an_extra_store_may_not_take_the_default_id(key: str, plugin_id: str) -> None:
    # [persistence.journals.default] silently replaced [persistence.journal]: the sqlite
    # journal configured there was never used, the events went to memory.
    single = "journal" if key == "journals" else "snapshot_store"
    config = {"persistence": {single: {"plugin": "sqlite", "path": "x.db"},
                              key: {plugin_id: {"plugin": "inmem"}}}}
    with pytest.raises(ConfigError, match=f"id {plugin_id!r} is reserved"):
        load_settings(config)


def test_a_relative_database_path_is_taken_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # README (Configuration): relative to the current directory, not to the config file's.
    (tmp_path / "conf").mkdir()
    (tmp_path / "run").mkdir()
    path = write(tmp_path / "conf", '[persistence.journal]\nplugin = "sqlite"\n'
                                    'path = "data/events.db"\n')
    monkeypatch.chdir(tmp_path / "run")
    with ActorSystem("relative", config=path):
        pass
    assert (tmp_path / "run" / "data" / "events.db").is_file()
    assert not (tmp_path / "conf" / "data").exists()


@pytest.mark.parametrize("section", ["journal", "snapshot_store"])
def test_settings_without_their_plugin_name_the_missing_plugin(section: str) -> None:
    # The in-memory default took them as its own: "InmemJournal: unknown setting 'path'".
    with pytest.raises(ConfigError, match=rf"persistence\.{section}\.plugin is missing.*\(path\)"):
        load_settings({"persistence": {section: {"path": "x.db"}}})
    # Adapter keys belong to the runtime: with them alone the in-memory default stands.
    settings = load_settings({"persistence": {"journal": {"event_adapters": {}}}})
    assert settings.plugin(JOURNAL, None).spec == "inmem"
