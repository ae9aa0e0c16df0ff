"""`alsctl dashboard`'s server against a real Mosquitto and a simulated rig publishing to it:
sign-in, the fleet and rig views, the Server-Sent Events stream, and commands that carry the
signed-in person into the rig's journal. Over plain HTTP (aiohttp's client); the browser
test is test_browser.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.scenario import Scenario
from controller.dashboard.server import Dashboard, serve
from controller.dashboard.users import Sessions, Users
from controller.journal import Journal
from controller.mqtt.broker import Broker
from controller.mqtt.local import LocalBroker
from tests.mqtt.conftest import RIG, bridge_for, short_li_als

#: air in the return line 20 min in, left for the dashboard's user to handle
AIR = Scenario.model_validate(
    {"name": "air", "events": [{"at_s": 1200, "fault": "air_bubble", "duration_s": 2}]}
)
PASSWORD = "nurse-password"


@pytest.fixture
async def dashboard(broker: LocalBroker, tmp_path: Path) -> AsyncIterator[str]:
    """The dashboard on a free port, signed in to the broker as its `dashboard` user."""
    users = Users(tmp_path / "users.json")
    users.add("nurse", PASSWORD)
    address = Broker.from_url(broker.url, env=broker.env("dashboard"))
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(Dashboard(address, users, sessions=Sessions()), "127.0.0.1", 0, url.set_result)
    )
    try:
        yield await asyncio.wait_for(url, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def signed_in(http: aiohttp.ClientSession, base: str, password: str = PASSWORD) -> Any:
    async with http.post(
        f"{base}login", data={"user": "nurse", "password": password}, allow_redirects=False
    ) as r:
        assert r.status == 302
        return r.headers["Location"]


async def events(http: aiohttp.ClientSession, url: str) -> AsyncIterator[tuple[str, Any]]:
    """Server-Sent Events as (event, data)."""
    async with http.get(url) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        kind = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, json.loads(line[6:])


async def test_sign_in_fleet_stream_and_commands_journaled_with_the_user(
    broker: LocalBroker, dashboard: str, tmp_path: Path
) -> None:
    # unsafe: a jar that keeps cookies from an IP address (127.0.0.1), as a browser does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        # nothing without signing in; a wrong password is refused
        async with http.get(f"{dashboard}api/fleet") as r:
            assert r.status == 401
        async with http.get(dashboard, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/login")
        assert await signed_in(http, dashboard, "wrong-password") == "/login?failed=1"
        # after sign-in, back where the person was going, but never to another host
        for asked, back in (("/rig/sim-01", "/rig/sim-01"), ("//evil.example", "/"),
                            ("/\\evil.example", "/"), ("https://evil.example", "/")):  # fmt: skip
            async with http.post(
                f"{dashboard}login?next={asked}",
                data={"user": "nurse", "password": PASSWORD},
                allow_redirects=False,
            ) as r:
                assert r.headers["Location"] == back, asked
        assert await signed_in(http, dashboard) == "/"
        async with http.get(f"{dashboard}api/me") as r:
            me = await r.json()
        assert me["user"] == "nurse" and me["token"]
        async with http.get(f"{dashboard}static/app.js") as r:
            assert r.status == 200 and "EventSource" in await r.text()

        with Journal(tmp_path / "j.db") as journal:
            opts = RunOptions(
                gate=CLEAR, scenario=AIR, speed=300, journal=journal, edges=[bridge_for(broker)]
            )
            run = asyncio.create_task(run_treatment(RIG, short_li_als(), opts))
            try:
                # the rig's tile turns to a high alarm on the stream, and the rig's view logs it
                # (the active alarms, the state and the events are three topics: wait for all)
                tile: dict[str, Any] | None = None
                logged = False
                async with asyncio.timeout(60):
                    async for kind, data in events(http, f"{dashboard}api/stream?rig=sim-01"):
                        if kind == "tiles":
                            tiles = {t["rig_id"]: t for t in data["tiles"]}
                            tile = tiles.get("sim-01", tile)
                        elif kind == "rig":
                            texts = (e["text"] for e in data["log"])
                            logged = logged or any("air in the return line" in t for t in texts)
                        alarmed = tile and tile["alarm"] and tile["alarm"]["priority"] == "high"
                        if alarmed and tile["phase"] == "alarm" and logged:
                            break
                assert tile is not None
                assert tile["status"] == "online" and tile["phase"] == "alarm"
                assert tile["alarm"]["what"] == "air in the return line"
                assert tile["interrupted"] in ("exchange", "exchange_collect")
                async with http.get(f"{dashboard}api/rigs/sim-01") as r:
                    detail = await r.json()
                assert any("air in the return line" in e["text"] for e in detail["log"])
                assert (
                    detail["alarm_list"][0]["response"] == "all pumps stopped, venous clamp closed"
                )
                assert "acknowledge_alarm" in detail["allowed"] and detail["trend"]

                cmd = f"{dashboard}api/rigs/sim-01/commands"
                async with http.post(f"{cmd}/acknowledge_alarm", json={}) as r:
                    assert r.status == 403  # no CSRF token
                headers = {"X-CSRF-Token": me["token"]}
                async with http.post(f"{cmd}/open_the_clamp", json={}, headers=headers) as r:
                    assert r.status == 403
                async with http.post(f"{cmd}/acknowledge_alarm", json={}, headers=headers) as r:
                    acked = await r.json()
                assert acked["accepted"] and acked["result"] == "done", acked
                async with asyncio.timeout(30):
                    while True:  # refused while the air is still there
                        async with http.post(f"{cmd}/resume", json={}, headers=headers) as r:
                            resumed = await r.json()
                        if resumed["accepted"]:
                            break
                        assert "cannot resume" in resumed["result"], resumed
                        await asyncio.sleep(0.2)
                summary, _ = await asyncio.wait_for(run, 120)
            finally:
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
    assert summary.completed
    record = jr.load(tmp_path / "j.db", 1, trends=False)
    ops = [(e.body["request"], e.body["cause"]) for e in record.events if e.kind == "operator"]
    assert ("acknowledge", "mqtt nurse") in ops and ("resume", "mqtt nurse") in ops, ops


async def test_repeated_failed_sign_ins_lock_the_name_out(dashboard: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for _ in range(5):
            assert await signed_in(http, dashboard, "wrong-password") == "/login?failed=1"
        # the right password no longer helps, for a while
        assert await signed_in(http, dashboard) == "/login?failed=locked"


def test_sessions_expire_and_cannot_be_forged(tmp_path: Path) -> None:
    sessions = Sessions(lifetime_s=60)
    cookie, session = sessions.issue("nurse", now=1000.0)
    assert sessions.read(cookie, now=1059.0) == session
    assert sessions.read(cookie, now=1061.0) is None  # expired
    _user, expires, token, mac = cookie.split("|")
    assert sessions.read(f"dr|{expires}|{token}|{mac}", now=1001.0) is None  # forged
    assert Sessions().read(cookie, now=1001.0) is None  # another server's key
    users = Users(tmp_path / "u.json")
    users.add("nurse", PASSWORD)
    assert users.check("nurse", PASSWORD) and not users.check("nurse", "other-password")
    assert not users.check("nobody", PASSWORD)
    assert PASSWORD not in (tmp_path / "u.json").read_text()


def test_time_remaining_needs_a_steady_rate_and_is_held_in_alarm() -> None:
    from controller.dashboard.fleet import Fleet

    fleet = Fleet()

    def state(t_ms: int, done: float, phase: str = "exchange") -> bytes:
        progress = {"what": "exchanged", "done": done, "target": 600, "unit": "mL"}
        body = {"t_ms": t_ms, "phase": phase, "alarms": [], "volumes": {}, "progress": progress}
        return json.dumps(body).encode()

    fleet.apply("als/sim-01/status", b"online", 0.0)
    for t in range(0, 10_001, 500):  # 10 s of telemetry-rate states: too short a rate
        fleet.apply("als/sim-01/state", state(t, t / 2000), 0.0)
    rig = fleet.rigs["sim-01"]
    assert fleet.remaining_ms(rig) is None
    for t in range(10_500, 40_001, 500):
        fleet.apply("als/sim-01/state", state(t, t / 2000), 0.0)  # 0.5 mL/s
    assert fleet.remaining_ms(rig) == pytest.approx((600 - 20) / 0.5 * 1000, rel=0.01)
    assert not fleet.tile(rig, 0.0)["held"]
    fleet.apply("als/sim-01/state", state(40_500, 20.25, "alarm"), 0.0)
    assert fleet.remaining_ms(rig) is None  # held
    assert fleet.tile(rig, 0.0)["held"]  # what the pages show instead of a time


async def test_a_refused_broker_login_ends_the_dashboard(
    broker: LocalBroker, tmp_path: Path
) -> None:
    from controller.mqtt.monitor import LoginRefused

    env = {**broker.env("dashboard"), "ALSCTL_MQTT_PASSWORD": "not-the-password"}
    address = Broker.from_url(broker.url, env=env)
    users = Users(tmp_path / "users.json")
    with pytest.raises(LoginRefused, match="refused the login of 'dashboard'"):
        await asyncio.wait_for(
            serve(Dashboard(address, users), "127.0.0.1", 0, lambda _url: None), 30
        )
