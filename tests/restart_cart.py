"""Child process of the restart tests: ``python -m tests.restart_cart write|read|hang CONFIG``.

``write`` tells the seed's four commands to a cart, prints the count and exits normally;
``hang`` does the same, then waits to be killed; ``read`` starts a new system and prints the
count the respawned cart recovered. ``stuck-exit`` and ``stuck-hang`` first leave an actor
stuck in a handler, then shut down normally or wait to be killed.
"""

from __future__ import annotations

import sys
import time

from persistent_actors import ActorSystem
from samples.cart import COMMANDS, Cart
from tests.system_actors import Stuck


def main(phase: str, config: str) -> None:
    system = ActorSystem("restart", config=config)
    cart = system.actor_of(Cart, name="persistentActor")
    if phase in ("write", "hang", "stuck-exit", "stuck-hang"):
        for command in COMMANDS:
            cart.tell(command)
    if phase.startswith("stuck"):
        system.actor_of(Stuck).tell(600.0)  # a handler that never returns in time
    print(f"count={cart.ask('print', timeout=10)}", flush=True)
    if phase in ("hang", "stuck-hang"):
        while True:  # the test kills us with SIGKILL: no shutdown, no cleanup
            time.sleep(1)
    system.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
