"""``persistent-actors node --config node.toml``: run one cluster node until SIGINT or SIGTERM.

The config's ``[cluster]`` section names the convention leader, this node's admin port, bind
address and secret file, and ``[cluster.entities]`` the entity types it hosts; the journal is
PostgreSQL (README "Running a cluster"). A stop hands the node's shards off cleanly; a crash
(SIGKILL) is survived by the other nodes once its leases expire.
"""

from __future__ import annotations

import argparse
import logging
import os

from persistent_actors._config import CONFIG_ENV_VAR
from persistent_actors.cli._common import EXIT_OK, UsageError, add_config_option
from persistent_actors.cluster.node import Node

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Set up the ``node`` command's parser."""
    add_config_option(parser)
    parser.set_defaults(handler=_node)


def _node(args: argparse.Namespace) -> int:
    config = args.config or os.environ.get(CONFIG_ENV_VAR)
    if not config:
        raise UsageError(f"node: --config FILE is required (or set {CONFIG_ENV_VAR})")
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Node(config).run()
    return EXIT_OK
