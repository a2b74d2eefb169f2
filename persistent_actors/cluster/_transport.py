"""What a cluster process sets up before its thespian system starts: convention, secret.

* **Convention.** Every cluster process joins thespian's convention at ``[cluster] leader``
  (its admin is the transport and remote-spawn layer). Thespian's defaults notice a lost
  member after ~22 minutes and never join a member started before its leader within 90 s
  (``research/thespian.md`` section 6); the periods are lowered here. Nothing in routing,
  membership or failover depends on the convention or its leader: that is PostgreSQL's job.
* **Frame authentication** (``[cluster] secret_file``): installed through
  ``persistent_actors._thespian.frame_auth`` before thespian forks the admin and actors.
"""

from __future__ import annotations

import datetime
import importlib
import os
from typing import Any, Final

from persistent_actors._config import ClusterSettings
from persistent_actors.errors import ConfigError

__all__ = ["NODE_CAPABILITY", "cluster_capabilities", "node_id_of", "secure_cluster_transport"]

# The capability naming a process's node id (a client process has one too; it holds no shards).
NODE_CAPABILITY: Final = "persistent_actors.node"
# Convention periods: a member re-registers every 10 s and retries a lost leader every 5 s.
_CONVENTION_PERIODS: Final = {"CONVENTION_REREGISTRATION_PERIOD": 10,
                              "CONVENTION_RESTART_PERIOD": 5}


def cluster_capabilities(cluster: ClusterSettings, admin_port: int,
                         node_id: str) -> dict[str, Any]:
    """The thespian capabilities of a cluster process: convention leader and node id.

    Also lowers thespian's convention periods (environment variables, read by a thespian
    that is not imported yet, and the module's values, if it is).
    """
    for name, seconds in _CONVENTION_PERIODS.items():
        os.environ[name] = f"0:{seconds:02d}"
    convention = importlib.import_module("thespian.system.admin.convention")
    for name, seconds in _CONVENTION_PERIODS.items():
        setattr(convention, name, datetime.timedelta(seconds=seconds))
    capabilities: dict[str, Any] = {NODE_CAPABILITY: node_id}
    if cluster.leader != (cluster.bind_address, admin_port):  # the leader itself has none
        capabilities["Convention Address.IPv4"] = cluster.leader
    return capabilities


def secure_cluster_transport(cluster: ClusterSettings) -> None:
    """Install frame authentication when ``[cluster] secret_file`` is set (sec's module).

    The loopback rule (no secret: bind to loopback only) is checked with the config.

    Raises:
        ConfigError: the secret file is missing or too short, or this build has no frame
            authentication.

    """
    if cluster.secret_file is None:
        return
    try:
        frame_auth = importlib.import_module("persistent_actors._thespian.frame_auth")
    except ImportError:
        raise ConfigError("config key cluster.secret_file: this build has no frame "
                          "authentication (persistent_actors._thespian.frame_auth)") from None
    frame_auth.install(frame_auth.load_secret(cluster.secret_file))


def node_id_of(cluster: ClusterSettings, admin_port: int) -> str:
    """A cluster process's node id: ``[cluster] node_id``, else ``"bind_address:port"``."""
    return cluster.node_id or f"{cluster.bind_address}:{admin_port}"
