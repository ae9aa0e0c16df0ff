"""`alsctl fleet`: N simulated rigs on one broker, for demos and load tests.

Each rig (`sim-001`, `sim-002`, ...) is a real controller over a simulated firmware with its
own journal, publishing as its own MQTT user, exactly as `alsctl run --sim --mqtt` would; they
share one process and one event loop (a rig costs tens of microseconds of CPU per cycle, so
a hundred at real time use a fraction of a core). They start staggered, each with a
prescription of its own (the shipped ones in turn, blood flow varied), and some meet faults
drawn from a scenario mix. An alarm clears itself after `AUTO_RESUME_S` once its condition is
gone, unless a supervisor acts first; a rig whose treatment ends starts another after a
pause, until Ctrl-C.

`alsctl fleet init` writes the rigs' MQTT users into a folder: a random password per rig
(`passwords.json`, readable by its owner only), Mosquitto's password file with them beside
the shipped users, the shipped ACL (each rig owns `als/<its id>/#`) and a mosquitto.conf that
points at both. The broker is then started from that file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from controller import examples
from controller.config.loading import load_prescription, load_rig, load_scenario
from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.errors import AlsError

FOLDER = Path("out/fleet")
PRESCRIPTIONS = ("pe", "li_als", "pe_adsorption", "pe_filtration", "adsorption")
#: An alarm whose condition is gone is acknowledged and resumed after this much rig time
AUTO_RESUME_S = 30.0
#: Rigs start this far apart (wall time), so their phases differ
STAGGER_S = 0.5
#: A rig whose treatment ended starts the next after this long (wall time)
PAUSE_S = 5.0
#: Mosquitto's password hash: PBKDF2-SHA512, as `mosquitto_passwd` writes it ($7$)
PBKDF2_ROUNDS = 101


class FleetError(AlsError):
    exit_code = 2


class MixEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str | None = Field(None, description="a shipped scenario's name or a file; none")
    weight: float = Field(1.0, gt=0, description="relative share of the rigs")


class ScenarioMix(BaseModel):
    """`--scenario-mix FILE`: which share of the rigs meets which faults."""

    model_config = ConfigDict(extra="forbid")
    mix: list[MixEntry] = Field(min_length=1)


DEFAULT_MIX = ScenarioMix(
    mix=[
        MixEntry(scenario=None, weight=6),
        MixEntry(scenario="air_bubble", weight=2),
        MixEntry(scenario="bad_day", weight=2),
    ]
)


def rig_ids(n: int) -> list[str]:
    return [f"sim-{i:03d}" for i in range(1, n + 1)]


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash (`$7$`: PBKDF2-HMAC-SHA512, 101 rounds)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ROUNDS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ROUNDS}${b64(salt).decode()}${b64(digest).decode()}"


def init(folder: Path, n: int) -> dict[str, str]:
    """The rigs' users (see the module's docstring); a rig keeps the password it had."""
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "passwords.json"
    passwords: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    for rig in rig_ids(n):
        passwords.setdefault(rig, secrets.token_urlsafe(12))
    tmp = store.with_suffix(".tmp")
    tmp.write_text(json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(store)
    shipped = examples.MOSQUITTO
    lines = [line for line in (shipped / "passwd").read_text().splitlines() if line.strip()]
    lines += [f"{rig}:{mosquitto_hash(pw)}" for rig, pw in sorted(passwords.items())]
    (folder / "passwd").write_text("\n".join(lines) + "\n")
    os.chmod(folder / "passwd", 0o600)
    shutil.copyfile(shipped / "acl", folder / "acl")
    conf = examples.broker_config((shipped / "mosquitto.conf").read_text(), folder)
    (folder / "mosquitto.conf").write_text(conf.replace("`alsctl init`", "`alsctl fleet init`"))
    (folder / examples.PERSISTENCE).mkdir(parents=True, exist_ok=True)
    return passwords


def passwords(folder: Path, n: int) -> dict[str, str]:
    store = folder / "passwords.json"
    if not store.exists():
        raise FleetError(
            f"no rig users in {folder}: run `alsctl fleet init --rigs {n} --folder {folder}`"
            f" and start the broker from {folder / 'mosquitto.conf'}"
        )
    known: dict[str, str] = json.loads(store.read_text())
    missing = [r for r in rig_ids(n) if r not in known]
    if missing:
        raise FleetError(
            f"{folder} has users for {len(known)} rigs, not {n}: run `alsctl fleet init --rigs"
            f" {n} --folder {folder}` and restart the broker (or send it SIGHUP)"
        )
    return known


def load_mix(path: str | None) -> ScenarioMix:
    if path is None:
        return DEFAULT_MIX
    try:
        return ScenarioMix.model_validate(yaml.safe_load(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise FleetError(f"--scenario-mix {path}: {exc}") from None


@dataclass(slots=True)
class Plan:
    """One rig's treatments: its rig file, prescription and scenario, drawn once."""

    rig: RigConfig
    rx: Prescription
    scenario: Scenario | None
    delay_s: float
    sessions: list[int] = field(default_factory=list)


def plans(
    n: int,
    *,
    mix: ScenarioMix = DEFAULT_MIX,
    telemetry_hz: float | None = None,
    prescription: str | None = None,
    seed: int = 1,
) -> list[Plan]:
    """Each rig's rig file (its own id, simulated patient seed and MQTT user), a shipped
    prescription in turn with the blood flow varied within its bounds, and a scenario drawn
    from the mix (faults moved by up to a few minutes, so the rigs do not fail together)."""
    draw = random.Random(seed)
    base = load_rig(examples.resolve("rig", "sim"))
    scenarios = [
        (load_scenario(examples.resolve("scenario", e.scenario)) if e.scenario else None, e.weight)
        for e in mix.mix
    ]
    out = []
    for i, rig_id in enumerate(rig_ids(n)):
        mqtt = base.mqtt.model_copy(
            update={"username": rig_id, **({"telemetry_hz": telemetry_hz} if telemetry_hz else {})}
        )
        sim = base.sim.model_copy(update={"seed": base.sim.seed + i})
        rig = base.model_copy(update={"rig_id": rig_id, "mqtt": mqtt, "sim": sim})
        name = prescription or PRESCRIPTIONS[i % len(PRESCRIPTIONS)]
        rx = load_prescription(examples.resolve("prescription", name))
        flow = rx.blood_flow_ml_min * draw.uniform(0.9, 1.1)
        rx = Prescription.model_validate(
            {**rx.model_dump(exclude_none=True), "blood_flow_ml_min": round(flow)}
        )
        chosen = draw.choices([s for s, _ in scenarios], [w for _, w in scenarios])[0]
        if chosen is not None:
            shift = draw.uniform(-300, 300)
            # a tuple, as the model declares (model_copy does not validate what it is given)
            events = tuple(
                e.model_copy(update={"at_s": max(60.0, e.at_s + shift)})
                if e.at_s is not None
                else e
                for e in chosen.events
            )
            chosen = chosen.model_copy(update={"events": events})
        out.append(Plan(rig, rx, chosen, i * STAGGER_S))
    return out


async def run_rig(
    plan: Plan,
    url: str,
    password: str,
    *,
    speed: float | None,
    folder: Path,
    once: bool,
    say: Callable[[str], Any] = print,
) -> None:
    """One rig's treatments, one after another (one, with `once`), journaled in its own
    file, published as its own user."""
    from controller.app import CLEAR, RunOptions, run_treatment
    from controller.journal import Journal
    from controller.mqtt.bridge import MqttBridge
    from controller.mqtt.broker import Broker

    await asyncio.sleep(plan.delay_s)
    rig = plan.rig
    env = {"ALSCTL_MQTT_USERNAME": rig.rig_id, "ALSCTL_MQTT_PASSWORD": password}
    broker = Broker.from_url(url, rig.mqtt, env=env)
    journals = folder / "journals"
    journals.mkdir(parents=True, exist_ok=True)
    while True:
        bridge = MqttBridge(broker, rig.mqtt, rig.rig_id)
        with Journal(journals / f"{rig.rig_id}.db") as journal:
            opts = RunOptions(
                gate=CLEAR,
                speed=speed,
                scenario=plan.scenario,
                auto_resume_s=AUTO_RESUME_S,
                journal=journal,
                edges=[bridge],
            )
            summary, _ = await run_treatment(rig, plan.rx, opts)
        if summary.session is not None:
            plan.sessions.append(summary.session)
        say(f"{rig.rig_id}: {summary.outcome}: {summary.outcome_detail}")
        if once:
            return
        await asyncio.sleep(PAUSE_S)


async def run_fleet(
    n: int,
    url: str,
    *,
    folder: Path = FOLDER,
    speed: float | None = 60.0,
    mix: ScenarioMix = DEFAULT_MIX,
    telemetry_hz: float | None = None,
    prescription: str | None = None,
    once: bool = False,
    say: Callable[[str], Any] = print,
) -> list[Plan]:
    """Every rig's treatments (`run_rig`); `prescription` gives them all the same one
    (a load test's even load) instead of the shipped ones in turn."""
    known = passwords(folder, n)
    fleet = plans(n, mix=mix, telemetry_hz=telemetry_hz, prescription=prescription)
    for p in fleet:
        scenario = p.scenario.name if p.scenario else "no fault"
        say(f"{p.rig.rig_id}: {p.rx.name}, blood {p.rx.blood_flow_ml_min:g} mL/min, {scenario}")
    await asyncio.gather(
        *(
            run_rig(p, url, known[p.rig.rig_id], speed=speed, folder=folder, once=once, say=say)
            for p in fleet
        )
    )
    return fleet
