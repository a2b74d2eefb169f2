"""The aiohttp cart sample, served on a free port and driven by a real HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from persistent_actors import ActorSystem
from samples.web import create_app
from tests.conftest import system_config


@asynccontextmanager
async def serve(system: ActorSystem) -> AsyncIterator[str]:
    """Run the sample on 127.0.0.1 with a port the OS picks; yield its base URL."""
    runner = web.AppRunner(create_app(system))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def _count(http: aiohttp.ClientSession, method: str, url: str,
                 **kwargs: object) -> int:
    async with http.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status == 200, await response.text()
        body = await response.json()
    count: int = body["count"]
    return count


async def test_the_cart_over_http(system: ActorSystem) -> None:
    async with serve(system) as url, aiohttp.ClientSession() as http:
        assert await _count(http, "GET", f"{url}/cart") == 0
        assert await _count(http, "POST", f"{url}/cart/items", json={"item": "apple"}) == 1
        assert await _count(http, "POST", f"{url}/cart/items", json={"item": "pear"}) == 2
        assert await _count(http, "DELETE", f"{url}/cart/items/apple") == 1
        # Concurrent requests: every event is stored once, none is lost.
        await asyncio.gather(*(_count(http, "POST", f"{url}/cart/items", json={"item": str(i)})
                               for i in range(20)))
        assert await _count(http, "GET", f"{url}/cart") == 21
        async with http.post(f"{url}/cart/items", json={"name": "x"}) as response:
            assert response.status == 400
        async with http.post(f"{url}/cart/items", data=b"not json") as response:
            assert response.status == 400
        # A lone surrogate a JSON body can carry: answered 200 while the event was rejected.
        async with http.post(f"{url}/cart/items", data=b'{"item": "x\\ud800"}',
                             headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400
            assert "cannot be stored: not valid UTF-8 text" in await response.text()
        async with http.delete(f"{url}/cart/items/x%00y") as response:
            assert response.status == 400
        assert await _count(http, "GET", f"{url}/cart") == 21


async def test_one_cart_per_user_through_a_region(system: ActorSystem) -> None:
    async with serve(system) as url, aiohttp.ClientSession() as http:
        assert await _count(http, "GET", f"{url}/carts/alice") == 0
        assert await _count(http, "POST", f"{url}/carts/alice/items", json={"item": "a"}) == 1
        assert await _count(http, "POST", f"{url}/carts/bob/items", json={"item": "b"}) == 1
        assert await _count(http, "POST", f"{url}/carts/alice/items", json={"item": "c"}) == 2
        assert await _count(http, "DELETE", f"{url}/carts/alice/items/a") == 1
        await asyncio.gather(*(_count(http, "POST", f"{url}/carts/user-{i}/items",
                                      json={"item": "x"}) for i in range(20)))
        counts = await asyncio.gather(*(_count(http, "GET", f"{url}/carts/user-{i}")
                                        for i in range(20)))
        assert counts == [1] * 20
        assert await _count(http, "GET", f"{url}/carts/bob") == 1
        assert await _count(http, "GET", f"{url}/cart") == 0  # the single cart is apart


async def test_the_cart_survives_a_restart_of_the_service(base: str, tmp_path: Path) -> None:
    config = system_config(base, journal={"plugin": "sqlite", "path": str(tmp_path / "e.db")})
    with ActorSystem("web", config=config) as system:
        async with serve(system) as url, aiohttp.ClientSession() as http:
            for item in ("a", "b", "c"):
                await _count(http, "POST", f"{url}/cart/items", json={"item": item})
    with ActorSystem("web", config=config) as system:
        async with serve(system) as url, aiohttp.ClientSession() as http:
            assert await _count(http, "GET", f"{url}/cart") == 3
