"""A local server speaking IBM Cloud IAM's token protocol, for tests (IBM Cloud is not reachable).

POST /identity/token with `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY`
answers like IAM: a JWT `access_token` with numeric `exp` and `iat` (unsigned, as the
clients do not check signatures), `expires_in`, `expiration`, `token_type: Bearer`.
Unknown keys get 400 with IAM's error shape. Every exchange is counted per key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web

from governance.loopthread import stop_loop_thread

GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def make_jwt(subject: str, lifetime: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {"iat": issued, "exp": issued + lifetime, "sub": subject, "iss": "https://iam.cloud.ibm.com/identity",
              "jti": secrets.token_hex(8)}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.{secrets.token_urlsafe(16)}"


class LocalIam:
    """Run with `with LocalIam(keys={"KEY": "account"}) as iam: iam.url`."""

    def __init__(self, keys: dict[str, str], lifetime: int = 3600, delay: float = 0.0) -> None:
        self.keys, self.lifetime, self.delay = keys, lifetime, delay
        self.fail_next = 0  # answer this many requests with 503 (an IAM outage)
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_key = 0  # the most exchanges for one key at the same moment
        self.max_in_flight = 0  # the most exchanges at the same moment, all keys
        self.exchanges: Counter[str] = Counter()
        self.issued: list[str] = []
        self.url = ""
        self._live: dict[str, float] = {}  # issued token -> when it expires
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != GRANT:
            return web.json_response({"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty."},
                                     status=400)
        key = str(form.get("apikey", ""))
        self.exchanges[key] += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"errorCode": "BXNIM0503E", "errorMessage": "Service unavailable"}, status=503)
        self.in_flight[key] += 1
        self.max_in_flight_per_key = max(self.max_in_flight_per_key, self.in_flight[key])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight[key] -= 1
        if key not in self.keys:
            return web.json_response({"errorCode": "BXNIM0415E",
                                      "errorMessage": "Provided API key could not be found."}, status=400)
        token = make_jwt(self.keys[key], self.lifetime)
        self.issued.append(token)
        self._live[token] = time.time() + self.lifetime
        now = int(time.time())
        return web.json_response({"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                                  "expires_in": self.lifetime, "expiration": now + self.lifetime, "scope": "ibm openid"})

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/identity/token", self._token)

    def valid_token(self, value: str) -> bool:
        """A bearer token this IAM issued and that has not expired."""
        if value not in self._live:
            return False
        return self._live[value] > time.time()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> LocalIam:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)

        stop_loop_thread(self._loop, self._thread)
