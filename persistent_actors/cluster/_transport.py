"""What a cluster process sets up before its thespian system starts: the convention.

* **Convention.** Every cluster process joins thespian's convention at ``[cluster] leader``
  (its admin is the transport and remote-spawn layer). Thespian's defaults notice a lost
  member after ~22 minutes and never join a member started before its leader within 90 s
  (``research/thespian.md`` section 6); the periods are lowered here. Nothing in routing,
  membership or failover depends on the convention or its leader: that is PostgreSQL's job.

Frame authentication needs nothing here: ``[cluster] secret_file`` becomes the system's
``secret_file``, which `ActorSystem` installs (``_thespian/frame_auth.py``) before thespian
forks its admin and actors.
"""

from __future__ import annotations

import datetime
import importlib
import os
from typing import Any, Final

from persistent_actors._config import ClusterSettings

__all__ = ["NODE_CAPABILITY", "cluster_capabilities", "node_id_of"]

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


def node_id_of(cluster: ClusterSettings, admin_port: int) -> str:
    """A cluster process's node id: ``[cluster] node_id``, else ``"bind_address:port"``."""
    return cluster.node_id or f"{cluster.bind_address}:{admin_port}"
