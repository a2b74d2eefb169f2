"""Entities across machines: nodes, membership and shard leases in PostgreSQL, failover.

A *node* (``persistent-actors node --config node.toml``, `persistent_actors.cluster.node`)
hosts the shards it holds leases for; a *client* (any `ActorSystem` whose config has a
``[cluster]`` section) routes ``system.entities(...)`` messages to the owning node. See the
README's "Running a cluster" for the design and the failure model.

This package's ``__init__`` imports nothing: `_system` uses the routing modules below the
front end, and the node (above it) uses `ActorSystem`.
"""
