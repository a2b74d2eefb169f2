"""The ``persistent-actors`` console script (also ``python -m persistent_actors``).

Commands come in groups (``persistent-actors journal ids``); each group is a module of this
package with a ``register(subparsers)`` function that adds its sub-commands, each of which sets
``handler`` (a function of the parsed arguments returning the exit status). Adding a group is
one module plus one line in `GROUPS`. A command without sub-commands (``persistent-actors
node``) is a module with ``register(parser)`` and one line in `COMMANDS`.

Exit status: 0 success, 1 a finding (``verify`` found a problem, ``copy`` counts differ),
2 a user mistake (missing file, wrong config key, bad argument), printed as one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

from persistent_actors.cli import journal, node
from persistent_actors.cli._common import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_config_option,
    fail,
)
from persistent_actors.errors import PersistentActorsError

__all__ = ["COMMANDS", "EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "GROUPS", "build_parser", "main"]

PROG: Final = "persistent-actors"
# name -> (help, register). A group registers its sub-commands on the subparsers it is given.
GROUPS: Final[dict[str, tuple[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]],
                                             None]]]] = {
    "journal": ("inspect, check, export, import and copy stored events", journal.register),
}
# name -> (help, register): a command of its own (no sub-commands).
COMMANDS: Final[dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]]] = {
    "node": ("run a cluster node: host entity shards until SIGINT or SIGTERM", node.register),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors, on every level, read ``persistent-actors: error: ...``.

    argparse words a sub-command's error with the sub-command's prog (``persistent-actors
    journal events: error: ...``); the command's promise is one form for every mistake, so the
    sub-command is named after the prefix instead. Sub-parsers are of this class too
    (``add_subparsers`` makes them of the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        where = self.prog.removeprefix(PROG).strip()
        self.exit(EXIT_USAGE, f"{PROG}: error: {where + ': ' if where else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one sub-parser per group."""
    # Typed as the base class: the groups register on `_SubParsersAction[ArgumentParser]`.
    parser: argparse.ArgumentParser = _Parser(
        prog=PROG,
        description="Operate persistent_actors event stores (inspect, verify, export, copy) "
                    "and run cluster nodes.")
    parser.add_argument(
        "--config", metavar="FILE",
        help="the TOML config the actor system uses (default: $PERSISTENT_ACTORS_CONFIG)")
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for name, (help_text, register) in GROUPS.items():
        group = groups.add_parser(name, help=help_text, description=help_text)
        # `persistent-actors journal --config F ids` too: between group and command.
        add_config_option(group)
        register(group.add_subparsers(dest="command", metavar="COMMAND", required=True))
    for name, (help_text, register_command) in COMMANDS.items():
        register_command(groups.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The modules a config names ([cluster.entities], event adapters) are found in the working
    # directory as with `python -m persistent_actors`, which puts it on the path; the console
    # script did not, and failed with "No module named ..." where the other worked.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `persistent-actors journal events X | head`: the reader left; nothing went wrong.
        sys.stderr.close()
        return EXIT_OK
    except (UsageError, PersistentActorsError, OSError, ValueError) as e:
        fail(e)
        return EXIT_USAGE
    return status
