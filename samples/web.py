"""The seed's cart over HTTP: an aiohttp service in front of the persistent cart actor.

Run it with ``.venv/bin/python -m samples.web [--port 8080] [config.toml]`` (needs the ``web``
extra: ``pip install -e '.[web]'``), then::

    curl localhost:8080/cart                                   # {"count": 0}
    curl -X POST localhost:8080/cart/items -d '{"item": "apple"}'   # {"count": 1}
    curl -X DELETE localhost:8080/cart/items/apple             # {"count": 0}
    curl -X POST localhost:8080/carts/alice/items -d '{"item": "pear"}'  # one cart per user

``/carts/{user}`` (GET, POST ``/items``, DELETE ``/items/{item}``) serves one cart per user
through an entity region (``system.entities("cart", UserCart)``): a user's cart starts on its
first request and is passivated when idle.

Handlers never block the event loop: they ``await cart.ask_async(...)`` and ``cart.tell(...)``
goes through the actor system's gateway thread. Each change is answered with the count after
the event was stored, because the cart stashes the ``"print"`` that follows a command until
that command's event is persisted. With ``samples/sqlite.toml`` the cart survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from aiohttp import web

from persistent_actors import ActorRef, ActorSystem, EntityRegion, PersistentActorsError
from persistent_actors.stored import unstorable
from samples.cart import PUT_IN, TAKE_OUT, Cart, Cmd, UserCart

CART = web.AppKey("cart", ActorRef)
CARTS = web.AppKey("carts", EntityRegion)
ASK_TIMEOUT = 10.0


async def _count(cart: ActorRef) -> web.Response:
    count = await cart.ask_async("print", timeout=ASK_TIMEOUT)
    return web.json_response({"count": count})


async def get_cart(request: web.Request) -> web.Response:
    """``GET /cart``: the number of items in the basket."""
    return await _count(request.app[CART])


async def _item(request: web.Request) -> str:
    try:
        body: Any = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON: {\"item\": \"<name>\"}") from None
    item = body.get("item") if isinstance(body, dict) else None
    if not isinstance(item, str) or not item:
        raise web.HTTPBadRequest(text="\"item\" must be a non-empty string")
    return _storable(item)


def _storable(item: str) -> str:
    # A JSON body may carry a lone surrogate ("\ud800"), a URL a NUL: no journal stores them,
    # so the event would be rejected and the request answered as if it had worked.
    reason = unstorable(item)
    if reason is not None:
        raise web.HTTPBadRequest(text=f"the item cannot be stored: {reason}")
    return item


async def put_item(request: web.Request) -> web.Response:
    """``POST /cart/items`` with ``{"item": name}``: put one in; answers the new count."""
    item = await _item(request)
    cart = request.app[CART]
    cart.tell(Cmd(f"{item}: {PUT_IN}"))
    return await _count(cart)


async def take_item(request: web.Request) -> web.Response:
    """``DELETE /cart/items/{item}``: take one out; answers the new count."""
    cart = request.app[CART]
    cart.tell(Cmd(f"{_storable(request.match_info['item'])}: {TAKE_OUT}"))
    return await _count(cart)


def _user_cart(request: web.Request) -> ActorRef:
    return request.app[CARTS].ref(request.match_info["user"])


async def get_user_cart(request: web.Request) -> web.Response:
    """``GET /carts/{user}``: the number of items in that user's basket."""
    return await _count(_user_cart(request))


async def put_user_item(request: web.Request) -> web.Response:
    """``POST /carts/{user}/items`` with ``{"item": name}``: answers the user's new count."""
    item = await _item(request)
    cart = _user_cart(request)
    cart.tell(Cmd(f"{item}: {PUT_IN}"))
    return await _count(cart)


async def take_user_item(request: web.Request) -> web.Response:
    """``DELETE /carts/{user}/items/{item}``: answers the user's new count."""
    cart = _user_cart(request)
    cart.tell(Cmd(f"{_storable(request.match_info['item'])}: {TAKE_OUT}"))
    return await _count(cart)


def create_app(system: ActorSystem, name: str = "web-cart") -> web.Application:
    """The aiohttp application; it creates the cart actor `name` in `system` on start-up."""
    app = web.Application()

    async def cart_actor(app: web.Application) -> Any:
        # actor_of blocks until the actor exists: keep it off the loop.
        cart = await asyncio.to_thread(system.actor_of, Cart, name=name)
        await cart.ask_async("print", timeout=ASK_TIMEOUT)  # recovered; the gateway is up
        app[CART] = cart
        app[CARTS] = await asyncio.to_thread(system.entities, "cart", UserCart)
        yield
        await asyncio.to_thread(system.stop, cart)

    app.cleanup_ctx.append(cart_actor)
    app.router.add_get("/cart", get_cart)
    app.router.add_post("/cart/items", put_item)
    app.router.add_delete("/cart/items/{item}", take_item)
    app.router.add_get("/carts/{user}", get_user_cart)
    app.router.add_post("/carts/{user}/items", put_user_item)
    app.router.add_delete("/carts/{user}/items/{item}", take_user_item)
    return app


def main(argv: list[str]) -> int:
    """Serve the cart until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m samples.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="TOML config (default: in-memory journal)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        system = ActorSystem("shop", config=args.config)
    except PersistentActorsError as e:  # a mistake in the config: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    with system:
        web.run_app(create_app(system), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
