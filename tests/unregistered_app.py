"""Child process of the bad-input table: ``python -m tests.unregistered_app CONFIG``.

An application that configures no logging persists an event class without ``@register``,
then prints the basket's items (``[]``: the event was rejected, never applied). The test
checks that the rejection reached stderr all the same.
"""

from __future__ import annotations

import sys

from persistent_actors import ActorSystem
from tests.bad_input_actors import Basket


def main(config: str) -> None:
    with ActorSystem("unregistered", config=config) as system:
        basket = system.actor_of(Basket, name="basket")
        basket.tell("banana")
        print(basket.ask("items", timeout=30.0), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
