"""`alsctl dashboard`: the supervisors' web view of every rig on a broker (aiohttp).

Why aiohttp: one asyncio library that is both the HTTP server and, with a plain
`StreamResponse`, the Server-Sent Events stream, beside the aiomqtt client in the same event
loop; no ASGI server to add (Starlette would need uvicorn), no template engine (the pages are
static files that fetch JSON). Why Server-Sent Events and not WebSocket: the data flows one
way (server to page); a command is an ordinary POST, answered when the rig answers; SSE
reconnects by itself in every browser.

The browser never sees broker credentials: this server subscribes as the dashboard's MQTT
user (`ALSCTL_MQTT_USERNAME`/`ALSCTL_MQTT_PASSWORD`, as `alsctl monitor`), people sign in to
it (controller/dashboard/users.py), and a command goes out as MQTT 5 request/response with
the signed-in name as `by`, which the rig journals. Everything the page loads is served from
the package: it works on a ward network with no way out.

Pushing: every MQTT message only updates the `Fleet` (and bumps the rig's version). Each
page's stream wakes every `FLUSH_S` of wall time and sends what changed since it last sent
(the newest state wins: a slow page skips intermediate states, it never queues them), and
everything once a second so ages and `stale` move on a silent rig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import aiomqtt
from aiohttp import web
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller.config.mqtt import COMMANDS as API_COMMANDS
from controller.dashboard.fleet import Fleet
from controller.dashboard.users import Session, Sessions, Users
from controller.mqtt.broker import Broker, login_refused
from controller.mqtt.models import ROOT
from controller.mqtt.monitor import LoginRefused

log = logging.getLogger("alsctl.dashboard")

#: How often (wall time) a page's stream sends what changed
FLUSH_S = 0.05
#: ... and everything, so ages and staleness move on silent rigs
FULL_S = 1.0
#: How long a command waits for the rig's answer
COMMAND_TIMEOUT_S = 10.0
COOKIE = "alsctl_session"
#: A name with this many failed sign-ins within `LOCKOUT_S` is refused until they age out
MAX_FAILURES = 5
LOCKOUT_S = 300.0
BACKOFF_MAX_S = 5.0
#: The commands a page may send: the API's names (docs/mqtt.md); the rig's own allow-list
#: (in its state) decides, this only keeps typos out
COMMANDS = frozenset(API_COMMANDS)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The signed-in person of a request (set by the sign-in middleware)
SESSION = web.RequestKey("session", Session)


def _static(name: str) -> bytes:
    return (resources.files("controller.dashboard") / "static" / name).read_bytes()


CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class Dashboard:
    """The server: the fleet from MQTT, the pages, the streams and the commands."""

    def __init__(
        self,
        broker: Broker,
        users: Users,
        *,
        sessions: Sessions | None = None,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.broker = broker
        self.users = users
        self.sessions = sessions or Sessions()
        self.flush_s = flush_s
        self.fleet = Fleet()
        #: each rig's version (bumped per message) and the fleet's
        self.versions: dict[str, int] = {}
        self.version = 0
        #: resolved (and replaced) on every change: every page's stream wakes on it
        self._tick: asyncio.Future[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._answers: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        #: failed sign-ins by name (monotonic times), for the lock-out
        self._failures: dict[str, list[float]] = {}
        self._replies = f"dashboard/{uuid.uuid4().hex[:12]}"
        self.error: BaseException | None = None
        self.app = web.Application(middlewares=[self._auth])
        self.app.add_routes(
            [
                web.get("/", self._page("fleet.html")),
                web.get("/rig/{rig}", self._page("rig.html")),
                web.get("/login", self._login_page),
                web.post("/login", self._login),
                web.post("/logout", self._logout),
                web.get("/static/{name}", self._asset),
                web.get("/api/me", self._me),
                web.get("/api/fleet", self._tiles),
                web.get("/api/rigs/{rig}", self._detail),
                web.get("/api/stream", self._stream),
                web.post("/api/rigs/{rig}/commands/{name}", self._command),
            ]
        )
        self.app.cleanup_ctx.append(self._mqtt_context)
        # a page's stream never ends by itself: the server's shutdown ends them all
        self._closing = asyncio.Event()
        self.app.on_shutdown.append(self._close_streams)

    # -- sign-in --------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        open_paths = ("/login", "/static/")
        if request.path == "/login" or request.path.startswith(open_paths[1]):
            return await handler(request)
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None:
            if request.path.startswith("/api/"):
                raise web.HTTPUnauthorized(text="sign in first")
            raise web.HTTPFound(f"/login?next={request.path}")
        request[SESSION] = session
        return await handler(request)

    async def _login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("login.html"), content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        now = time.monotonic()
        recent = [t for t in self._failures.get(name, []) if now - t < LOCKOUT_S]
        if len(recent) >= MAX_FAILURES:
            log.warning("dashboard: %r locked out after %d failed sign-ins", name, len(recent))
            raise web.HTTPFound("/login?failed=locked")
        ok = await asyncio.to_thread(self.users.check, name, password)
        if not ok:
            self._failures[name] = [*recent, now]
            log.warning("dashboard: refused sign-in of %r", name)
            raise web.HTTPFound("/login?failed=1")
        self._failures.pop(name, None)
        cookie, _ = self.sessions.issue(name)
        nxt = str(request.query.get("next", "/"))
        # only a path of this server: never "//host" or "/\\host", which browsers send away
        local = nxt.startswith("/") and "//" not in nxt and "\\" not in nxt
        response = web.HTTPFound(nxt if local else "/")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.sessions.lifetime_s),
            httponly=True,
            samesite="Strict",
        )
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE)
        raise response

    async def _me(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        return web.json_response({"user": s.user, "token": s.token, "expires": s.expires})

    # -- pages and data -------------------------------------------------------------------
    def _page(self, name: str) -> Handler:
        async def page(request: web.Request) -> web.StreamResponse:
            return web.Response(body=_static(name), content_type="text/html")

        return page

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = CONTENT_TYPES.get(name[name.rfind(".") :])
        if kind is None or "/" in name:
            raise web.HTTPNotFound()
        try:
            body = _static(name)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=kind)

    async def _tiles(self, request: web.Request) -> web.Response:
        return web.json_response({"tiles": self.fleet.tiles(time.time()), "mqtt": self._mqtt()})

    async def _detail(self, request: web.Request) -> web.Response:
        rig = request.match_info["rig"]
        if rig not in self.fleet.rigs:
            raise web.HTTPNotFound(text=f"no rig {rig!r} on the broker")
        return web.json_response(self.fleet.detail(rig, time.time()))

    def _mqtt(self) -> str:
        if self.error is not None:
            return f"broker: {self.error}"
        return "connected" if self._connected.is_set() else "connecting to the broker"

    async def _close_streams(self, app: web.Application) -> None:
        self._closing.set()
        if self._tick is not None and not self._tick.done():
            self._tick.set_result(None)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: `tiles` (the changed ones; all once a second) and, with
        `?rig=ID`, `rig` (that rig's view, its trend points after the ones already sent)."""
        rig = request.query.get("rig")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        seen: dict[str, int] = {}
        last_full = 0.0
        trend_ms: int | None = None
        try:
            while not self._closing.is_set():
                now = time.time()
                full = now - last_full >= FULL_S
                if full:
                    last_full = now
                changed = [r for r, v in self.versions.items() if full or v != seen.get(r)]
                if changed:
                    seen.update({r: self.versions[r] for r in changed})
                    tiles = [self.fleet.tile(self.fleet.rigs[r], now) for r in changed]
                    msg = {"tiles": tiles, "full": full, "mqtt": self._mqtt(), "sent": now}
                    await response.write(f"event: tiles\ndata: {json.dumps(msg)}\n\n".encode())
                    if rig is not None and rig in changed:
                        detail = self.fleet.detail(rig, now, since_ms=trend_ms)
                        if detail["trend"]:
                            trend_ms = detail["trend"][-1][0]
                        await response.write(f"event: rig\ndata: {json.dumps(detail)}\n\n".encode())
                elif full:
                    await response.write(b": keep-alive\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._next_change()), FULL_S)
                await asyncio.sleep(self.flush_s)  # gather what came meanwhile
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    # -- commands -------------------------------------------------------------------------
    async def _command(self, request: web.Request) -> web.Response:
        session = request[SESSION]
        if request.headers.get("X-CSRF-Token") != session.token:
            raise web.HTTPForbidden(text="missing or wrong X-CSRF-Token")
        rig, name = request.match_info["rig"], request.match_info["name"]
        known = self.fleet.rigs.get(rig)
        state = known.state if known is not None else None
        if name not in COMMANDS or state is None or name not in state.get("commands", []):
            raise web.HTTPForbidden(text=f"{rig} does not take {name!r} from a dashboard")
        try:
            asked = await request.json()
        except ValueError:
            asked = {}
        body: dict[str, Any] = {"by": session.user}
        if isinstance(asked, dict):
            if isinstance(asked.get("reason"), str):
                body["reason"] = asked["reason"][:200]
            if name == "set_blood_flow" and isinstance(asked.get("blood_flow_ml_min"), int | float):
                body["blood_flow_ml_min"] = asked["blood_flow_ml_min"]
        answer = await self.send(rig, name, body)
        return web.json_response(answer)

    async def send(self, rig: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """An MQTT 5 request to `rig`; its answer (or why there is none)."""
        client = self._client
        if client is None or not self._connected.is_set():
            return {"accepted": False, "result": "not sent: the dashboard has no broker now"}
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho-mqtt leaves it unannotated
        props.ResponseTopic = f"{ROOT}/{rig}/reply/{self._replies}"
        props.CorrelationData = corr
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[corr] = future
        try:
            await client.publish(
                f"{ROOT}/{rig}/cmd/{name}", json.dumps(body).encode(), 1, properties=props
            )
            return await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            return {"accepted": False, "result": f"no answer from {rig} in {COMMAND_TIMEOUT_S:g} s"}
        except aiomqtt.MqttError as exc:
            return {"accepted": False, "result": f"not sent: {exc}"}
        finally:
            self._answers.pop(corr, None)

    # -- the broker -----------------------------------------------------------------------
    async def _mqtt_context(self, app: web.Application) -> Any:
        task = asyncio.create_task(self.follow())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def follow(self) -> None:
        """Subscribe and keep the fleet current; reconnect with backoff; a refused login
        is kept in `error` (the pages say it) and ends the loop."""
        backoff = 0.2
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    tls_context=self.broker.tls,
                    protocol=aiomqtt.ProtocolVersion.V5,
                ) as client:
                    await client.subscribe(f"{ROOT}/#", qos=1)
                    self._client = client
                    self._connected.set()
                    self.error = None
                    backoff = 0.2
                    async for message in client.messages:
                        self.receive(message)
            except aiomqtt.MqttCodeError as exc:
                if login_refused(exc.rc):
                    self.error = LoginRefused(
                        f"the broker {self.broker.where} refused the login of"
                        f" {self.broker.username!r}: {exc}"
                    )
                    log.error("%s", self.error)
                    return
                self.error = exc
            except aiomqtt.MqttError as exc:
                self.error = exc
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff)  # wall time: people wait, not a rig
            backoff = min(2 * backoff, BACKOFF_MAX_S)

    def receive(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        topic = message.topic.value
        if f"/reply/{self._replies}" in topic:
            corr = getattr(message.properties, "CorrelationData", None)
            future = self._answers.get(corr) if isinstance(corr, bytes) else None
            if future is not None and not future.done():
                with contextlib.suppress(ValueError):
                    future.set_result(json.loads(payload))
            return
        rig = self.fleet.apply(topic, payload, time.time())
        if rig is not None:
            self.version += 1
            self.versions[rig] = self.version
            if self._tick is not None and not self._tick.done():
                self._tick.set_result(None)

    def _next_change(self) -> asyncio.Future[None]:
        if self._tick is None or self._tick.done():
            self._tick = asyncio.get_running_loop().create_future()
        return self._tick


async def serve(dashboard: Dashboard, host: str, port: int, ready: Callable[[str], Any]) -> None:
    """Serve until cancelled; `ready` is told the address once listening."""
    runner = web.AppRunner(dashboard.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    ready(f"http://{host}:{bound}/")
    try:
        while dashboard.error is None or not isinstance(dashboard.error, LoginRefused):
            await asyncio.sleep(0.5)
        raise dashboard.error
    finally:
        await runner.cleanup()
