"""Settings validation shared by the plugins: unknown keys are errors, never silently ignored."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from persistent_actors.errors import ConfigError

__all__ = ["check_keys", "int_setting"]


def check_keys(owner: str, settings: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Raise `ConfigError` naming the first key of `settings` that `owner` does not understand.

    A typo in a settings key would otherwise silently fall back to a default (for example a
    durability pragma), so every plugin rejects what it does not know.
    """
    for key in settings:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            msg = f"{owner}: unknown setting {key!r} (known settings: {known})"
            raise ConfigError(msg)


def int_setting(owner: str, settings: Mapping[str, Any], key: str, default: int, *,
                minimum: int) -> int:
    """``settings[key]`` (or `default`) as an int >= `minimum`; else `ConfigError` naming it."""
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"{owner}: setting {key!r} must be an int >= {minimum}, got {value!r}"
        raise ConfigError(msg)
    return value
