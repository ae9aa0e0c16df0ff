"""Alarm manager semantics, the pre-start gate, and the safe bounds of every limit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.config.checklist import Checklist, GateAnswers, Override
from controller.config.loading import load_prescription
from controller.config.rig import AlarmLimits
from controller.safety import gate
from controller.safety.alarms import AUDIO_PAUSE_MS, AlarmManager, Priority
from controller.safety.hazards import hazard_table

H = Priority.HIGH


def feed(m: AlarmManager, t: int, present: bool, **kw: object) -> bool:
    params = {"priority": H, **kw}
    return m.update(t, "x", present, **params) is not None  # type: ignore[arg-type]


def test_an_alarm_waits_for_its_condition_delay() -> None:
    m = AlarmManager()
    assert not feed(m, 0, True, delay_ms=1000)
    assert not feed(m, 900, True, delay_ms=1000)
    assert not feed(m, 950, False, delay_ms=1000)  # a blip resets the delay
    assert not feed(m, 1000, True, delay_ms=1000)
    assert feed(m, 2000, True, delay_ms=1000)
    assert [e.kind for e in m.drain()] == ["raised"]


def test_hysteresis_keeps_it_from_chattering() -> None:
    m = AlarmManager()
    feed(m, 0, True, clear_ms=2000)
    for t in range(100, 5000, 100):  # the condition flickers every 100 ms
        feed(m, t, t % 200 == 0, clear_ms=2000)
    assert [e.kind for e in m.drain()] == ["raised"]
    assert not feed(m, 7100, False, clear_ms=2000)
    assert [e.kind for e in m.drain()] == ["cleared"]


def test_latched_alarms_wait_for_acknowledgement_which_never_hides_a_condition() -> None:
    m = AlarmManager()
    feed(m, 0, True, latched=True)
    assert m.acknowledge(100) == ["x"]
    assert "x" in m.active and m.active["x"].condition  # acknowledged, still present
    assert not m.audible(200)  # silenced
    # gone, and it was acknowledged while present: it clears with its condition
    assert not feed(m, 300, False, latched=True)
    assert "x" not in m.active
    feed(m, 400, True, latched=True)
    feed(m, 500, False, latched=True)
    assert "x" in m.active and not m.active["x"].condition  # latched until acknowledged
    m.acknowledge(600)
    assert "x" not in m.active


def test_audio_pause_lasts_two_minutes_and_a_new_alarm_sounds_at_once() -> None:
    m = AlarmManager()
    feed(m, 0, True)
    assert m.audible(0)
    m.pause_audio(100)
    assert not m.audible(100 + AUDIO_PAUSE_MS - 1)
    assert m.audible(100 + AUDIO_PAUSE_MS)
    m.pause_audio(200_000)
    m.update(200_100, "y", True, priority=Priority.MEDIUM)
    assert m.audible(200_100)
    kinds = [e.kind for e in m.drain()]
    assert kinds.count("audio_paused") == 2 and kinds[-1] == "raised"


def test_a_rising_priority_escalates_and_unacknowledges() -> None:
    m = AlarmManager()
    m.update(0, "tmp", True, priority=Priority.MEDIUM)
    m.acknowledge(10)
    m.update(20, "tmp", True, priority=Priority.HIGH)
    assert m.active["tmp"].priority is Priority.HIGH and not m.active["tmp"].acknowledged
    assert m.highest() is Priority.HIGH
    assert [e.kind for e in m.drain()] == ["raised", "acknowledged", "escalated"]


# -- the pre-start gate --------------------------------------------------------------------
RX = load_prescription("config/prescriptions/li_als.yaml")
NO = {"severe_active_bleeding": False, "uncontrolled_map_below_65": False}
CONSENT = Override(clinician="Dr. Example", reason="no alternative", consent_confirmed=True)


def answers(override: Override | None = None, **yes: bool) -> GateAnswers:
    fields = {**NO, "severe_allergy_with_shock": False, **yes}
    return GateAnswers(checklist=Checklist(**fields), override=override)


def test_a_clear_checklist_and_map_start_as_prescribed() -> None:
    r = gate.evaluate(RX, answers(), 80.0, 65.0)
    assert r.allowed and r.prescription is RX and r.reasons == []


@pytest.mark.parametrize(
    "item", ["severe_active_bleeding", "uncontrolled_map_below_65", "severe_allergy_with_shock"]
)
def test_each_checklist_item_refuses_the_start(item: str) -> None:
    r = gate.evaluate(RX, answers(**{item: True}), 80.0, 65.0)
    assert not r.allowed
    assert r.reasons == [gate.QUESTIONS[item]]


def test_a_live_map_below_65_refuses_and_so_does_no_reading() -> None:
    assert gate.evaluate(RX, answers(), 60.0, 65.0).reasons == ["MAP 60 mmHg is below 65 mmHg"]
    assert gate.evaluate(RX, answers(), None, 65.0).reasons == ["no valid MAP reading"]
    assert not gate.evaluate(RX, None, 80.0, 65.0).allowed  # checklist not answered


def test_an_override_needs_all_three_fields() -> None:
    with pytest.raises(ValidationError):
        Override(clinician="Dr. Example", reason="no alternative", consent_confirmed=False)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Override.model_validate({"clinician": "Dr. Example", "consent_confirmed": True})
    with pytest.raises(ValidationError):
        Override.model_validate({"reason": "no alternative", "consent_confirmed": True})


def test_an_override_restricts_the_prescription_and_revalidates_it() -> None:
    r = gate.evaluate(RX, answers(CONSENT, severe_active_bleeding=True), 60.0, 65.0)
    assert r.allowed and r.override == CONSENT
    assert r.prescription.mode == "pe" and r.prescription.blood_flow_ml_min == 100
    assert not r.prescription.has_loop
    assert len(r.reasons) == 2
    ads = gate.evaluate(
        RX, answers(CONSENT.model_copy(update={"mode": "adsorption"}), severe_active_bleeding=True),
        80.0, 65.0,
    )  # fmt: skip
    assert ads.prescription.mode == "adsorption" and ads.prescription.exchange_ml == 0


def test_a_restriction_that_breaks_a_rule_is_refused_with_it() -> None:
    bad = RX.model_copy(update={"plasma_flow_ml_min": 36.0, "separation_ratio": None})
    r = gate.evaluate(bad, answers(CONSENT, severe_active_bleeding=True), 80.0, 65.0)
    assert not r.allowed
    assert "restricted prescription invalid" in r.reasons[-1]
    assert "plasma_flow_ml_min" in r.reasons[-1]


# -- safe bounds -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(AlarmLimits.model_fields))
def test_no_limit_can_be_configured_outside_its_safe_bounds(name: str) -> None:
    meta = {type(m).__name__: m for m in AlarmLimits.model_fields[name].metadata}
    low = getattr(meta.get("Ge"), "ge", None)
    high = getattr(meta.get("Le"), "le", None)
    assert low is not None and high is not None, f"{name} has no safe bounds"
    span = high - low
    for value in (low - span * 0.01 - 1e-6, high + span * 0.01 + 1e-6):
        with pytest.raises(ValidationError, match=name):
            AlarmLimits.model_validate({name: value})
    for value in (low, high):  # the bounds themselves are allowed (other rules may bind)
        try:
            AlarmLimits.model_validate({name: value})
        except ValidationError as exc:
            text = str(exc)
            assert "greater_than_equal" not in text and "less_than_equal" not in text, text


def test_the_hazard_table_follows_the_limits() -> None:
    table = {h.id: h for h in hazard_table(AlarmLimits(map_delay_s=20))}
    assert table["hypotension"].delay_s == 20
    assert len(table) == 19
