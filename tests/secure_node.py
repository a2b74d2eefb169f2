"""A multiproc-tcp actor system in its own process, driven line by line over stdin (for tests).

    python -m tests.secure_node --bind 127.0.0.1 --admin-port 19999 [--secret-file node.key]

Starts the system (frame authentication on when a secret file is given) with an `Echo` actor,
prints one JSON line ``{"admin_port": .., "actor_port": .., "host": ..}``, then answers each
command line with one JSON line:

- ``ping``: ask the local echo; ``{"reply": ...}``.
- ``ask HOST PORT``: ask the echo actor listening at HOST:PORT (another system) from this
  system: ``{"reply": ...}`` or ``{"error": "<exception class>"}``.
- ``quit`` (or end of input): shut the system down and exit.

Run inside a network namespace with ``ip netns exec`` by `tests.netns`. Its system's processes
never outlive it: the guardian shuts them down when this process dies.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from thespian.actors import ActorAddress
from thespian.system.transport.IPBase import TCPv4ActorAddress

from persistent_actors import ActorRef, ActorSystem
from tests.system_actors import Echo


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def remote_ref(host: str, port: int) -> ActorRef:
    """A ref to the actor listening at host:port in another actor system."""
    return ActorRef(ActorAddress(TCPv4ActorAddress(host, port, external=True)), f"{host}:{port}")


def main(argv: list[str] | None = None) -> int:
    """Run the node until `quit` or the end of input."""
    parser = argparse.ArgumentParser(prog="tests.secure_node")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--secret-file")
    args = parser.parse_args(argv)
    # As a real node does (persistent_actors.cli.node): the library's warnings from this
    # process (a frame of an external send dropped, say) reach stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # host_processes = 0: the echo is addressed from other systems by its port (`remote_ref`,
    # a bare thespian address), which only an actor with a process of its own has; in a shared
    # host the port is the host's, and a bare address carries no cell.
    system_section: dict[str, Any] = {"base": "multiproc-tcp", "admin_port": args.admin_port,
                                      "bind_address": args.bind, "host_processes": 0}
    if args.secret_file:
        system_section["secret_file"] = args.secret_file
    with ActorSystem("secure-node", config={"actor_system": system_section}) as system:
        echo = system.actor_of(Echo, name="echo")
        _say({"admin_port": args.admin_port, "host": args.bind,
              "actor_port": echo.address.addressDetails.sockname[1]})
        for line in sys.stdin:
            command = line.split()
            if not command or command[0] == "quit":
                break
            try:
                if command[0] == "ping":
                    _say({"reply": echo.ask("ping", timeout=10)})
                elif command[0] == "ask":
                    target = remote_ref(command[1], int(command[2]))
                    _say({"reply": target.ask(f"hello from {args.bind}", timeout=5)})
                else:
                    _say({"error": f"unknown command {command[0]!r}"})
            except Exception as e:
                _say({"error": type(e).__name__, "detail": str(e)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
