"""The dashboard in a real browser (Selenium, Debian's chromium and chromium-driver): a nurse
signs in and sees the fleet; a rig goes into alarm and its tile turns red within 1 s of the
controller's publishing it; she opens the rig, acknowledges and resumes with its buttons;
the rig's journal names her.

Three rigs from `alsctl fleet init`'s users, each publishing as itself to a broker started
from that folder. `ALSCTL_SCREENSHOTS=1` also writes the fleet view to docs/dashboard.png
(the README's picture).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from controller import fleet
from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.dashboard.server import Dashboard, serve
from controller.dashboard.users import Users
from controller.journal import Journal
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.broker import Broker
from controller.mqtt.local import LocalBroker
from controller.testing.faults import Injector
from tests.integration.test_cli_run import PE_SHORT
from tests.mqtt.conftest import Inbox, client, follow

SPEED = 20.0
PASSWORD = "nurse-password"
SCREENSHOT = Path("docs/dashboard.png")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless chromium through its own driver (the flags of tests/browser.py)."""
    driver_path = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    assert driver_path and chromium, "chromium-driver is not installed: `make test` installs it"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", "--window-size=1200,800",
    ):  # fmt: skip
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: webdriver.Chrome, condition: Any, timeout: float = 30.0) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: _quiet(condition, d))


def _quiet(condition: Any, driver: webdriver.Chrome) -> Any:
    try:
        return condition(driver)
    except WebDriverException:
        return False  # an element redrawn meanwhile: look again


@pytest.mark.timeout(300)  # a browser, three rigs and a broker, on a busy machine too
async def test_a_nurse_sees_the_alarm_and_acts_on_it(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    folder = tmp_path / "fleet"
    passwords = fleet.init(folder, 3)
    rx = tmp_path / "pe.yaml"  # long enough to be running all through the test
    rx.write_text(yaml.safe_dump({**PE_SHORT, "exchange_volume_ml": 3000}))
    users = Users(tmp_path / "users.json")
    users.add("nurse", PASSWORD)
    controllers: list[Any] = []
    with LocalBroker(tmp_path / "broker", config=folder) as broker:
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        address = Broker.from_url(broker.url, env=broker.env("dashboard"))
        server = asyncio.create_task(
            serve(Dashboard(address, users), "127.0.0.1", 0, url.set_result)
        )
        base = await asyncio.wait_for(url, 10)
        alarms = Inbox()
        async with client(broker, "dashboard") as watcher:
            await watcher.subscribe("als/+/alarms", qos=1)
            watching = asyncio.create_task(follow(watcher, alarms))
            runs = []
            for plan in fleet.plans(3, prescription=str(rx)):
                rig = plan.rig
                mine = rig.rig_id == "sim-002"  # the one the nurse will see in alarm
                env = {
                    "ALSCTL_MQTT_USERNAME": rig.rig_id,
                    "ALSCTL_MQTT_PASSWORD": passwords[rig.rig_id],
                }
                broker_of_rig = Broker.from_url(broker.url, rig.mqtt, env=env)
                journal = Journal(folder / f"{rig.rig_id}.db")
                opts = RunOptions(
                    gate=CLEAR,
                    speed=SPEED,
                    journal=journal,
                    edges=[MqttBridge(broker_of_rig, rig.mqtt, rig.rig_id)],
                    on_controller=controllers.append if mine else None,
                )
                run = asyncio.create_task(run_treatment(rig, plan.rx, opts))
                runs.append((rig.rig_id, journal, run))
            try:
                await asyncio.to_thread(sign_in, browser, base)
                # the fault comes once the nurse watches, while blood flows
                (c,) = controllers
                async with asyncio.timeout(60):
                    while c.machine.phase != "exchange":
                        await asyncio.sleep(0.05)
                Injector(c.hal.faults).inject("air_bubble", duration_s=2)
                await asyncio.to_thread(see_the_alarm, browser)
                stamp = json.loads(await alarms.wait_for("als/sim-002/alarms"))["stamp"]
                seen = browser.execute_script("return window.alsAlarmSeen['sim-002'];")
                assert seen is not None and seen - stamp <= 1.0, (seen, stamp)
                await asyncio.to_thread(act, browser)
                # she stopped it: rinse-back, then the session ends `stopped`
                summary, _ = await asyncio.wait_for(runs[1][2], 120)
            finally:
                for _rig, journal, run in runs:
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
                    journal.close()
                watching.cancel()
                server.cancel()
                await asyncio.gather(watching, server, return_exceptions=True)
    assert summary.rig_id == "sim-002" and summary.outcome == "stopped"
    assert summary.stop is not None and summary.stop.by == "mqtt nurse"
    record = jr.load(folder / "sim-002.db", 1, trends=False)
    ops = [
        (e.body["request"], e.body["cause"], e.body["result"])
        for e in record.events
        if e.kind == "operator"
    ]
    for request in ("acknowledge", "resume", "stop"):
        assert (request, "mqtt nurse", "done") in ops, ops


def sign_in(driver: webdriver.Chrome, base: str) -> None:
    """Sign in and see the three rigs."""
    driver.get(base)
    wait(driver, lambda d: "/login" in d.current_url)
    driver.find_element(By.ID, "user").send_keys("nurse")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rigs") == "3")
    assert "signed in: nurse" in driver.find_element(By.ID, "me").text


def see_the_alarm(driver: webdriver.Chrome) -> None:
    """sim-002 turns red and leads the fleet (and the picture is kept)."""
    # (tiles are redrawn as updates come: each look reads one element at once)
    wait(
        driver,
        lambda d: (
            (t := d.find_element(By.ID, "tile-sim-002")).get_attribute("data-alarm") == "high"
            and "air in the return line" in t.text
            and "alarm-high" in (t.get_attribute("class") or "")
        ),
    )
    first = "return document.querySelector('#tiles .tile').id"
    assert driver.execute_script(first) == "tile-sim-002"
    if os.environ.get("ALSCTL_SCREENSHOTS"):
        time.sleep(0.5)  # the other tiles' progress drawn too
        driver.save_screenshot(str(SCREENSHOT))


def act(driver: webdriver.Chrome) -> None:
    """Into the rig; acknowledge, resume once the air is gone, then stop (rinse-back), each
    confirmed in its dialog."""
    click(driver, "tile-sim-002")
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#alarms .alarm.high"))
    assert "all pumps stopped, venous clamp closed" in driver.find_element(By.ID, "alarms").text
    assert send(driver, "acknowledge_alarm"), driver.find_element(By.ID, "answer").text
    deadline = time.monotonic() + 30
    while not send(driver, "resume"):  # refused while the air is there: the answer says why
        assert time.monotonic() < deadline, driver.find_element(By.ID, "answer").text
        time.sleep(0.3)
    wait(
        driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-phase") != "alarm"
    )
    assert send(driver, "stop_treatment"), driver.find_element(By.ID, "answer").text


def click(driver: webdriver.Chrome, element: str) -> bool:
    """Click an element if it is there and enabled, in one step in the page (the buttons
    are redrawn with every update, so a found element may be gone by the click)."""
    clicked: bool = driver.execute_script(
        "const b = document.getElementById(arguments[0]);"
        " if (!b || b.disabled) return false; b.click(); return true;",
        element,
    )
    return clicked


def send(driver: webdriver.Chrome, command: str) -> bool:
    """A command's button, its confirmation, and whether the rig accepted it."""
    if not click(driver, f"cmd-{command}"):
        return False
    wait(driver, lambda d: d.find_element(By.ID, "confirm").is_displayed())
    assert "as nurse" in driver.find_element(By.ID, "confirm-text").text
    driver.find_element(By.ID, "confirm-yes").click()
    answer = driver.find_element(By.ID, "answer")  # never redrawn: only its text changes
    wait(
        driver,
        lambda d: answer.get_attribute("data-command") == command and ": sent" not in answer.text,
    )
    return answer.get_attribute("data-accepted") == "true"
