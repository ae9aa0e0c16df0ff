"""The shipped session prescriptions as the validation bench runs them: in their bands, and
the same values as docs/validation.json holds (the unit test checks the page against that
file, so a model change that moves a session row fails here instead of leaving
docs/validation.md silently stale)."""

from __future__ import annotations

import json

import pytest

from bench import validation as v


def _matches_bands_and_cache(experiment: str, result: v.Result) -> set[str]:
    """Every row of `experiment` in its band (or not comparable, as the page says) and equal
    to its cached value; returns the measures checked."""
    cached = {r["key"]: r for r in json.loads(v.CACHE.read_text())["rows"]}
    specs = [s for s in v.SPECS if s.experiment == experiment]
    for spec in specs:
        row = v.Row(spec, result[spec.measure])
        assert row.status in ("pass", "n/c"), (spec.key, row.model)
        assert cached[spec.key]["model"] == pytest.approx(round(row.model, 3), abs=1e-3), (
            f"{spec.key}: docs/validation.json is stale, run `python -m bench.validation --write`"
        )
    return {s.measure for s in specs}


def test_the_shipped_dpmas_session_matches_the_published_bands_and_the_cache() -> None:
    result = v.dpmas_session()
    measures = _matches_bands_and_cache("dpmas_session", result)
    assert measures >= {"bilirubin", "minutes", "patient_plasma_ml"}
    # it is the patient's plasma, not the loop's, that ends it: 3-4.5 L in 2-3 h
    assert result["patient_plasma_ml"] == pytest.approx(4500, abs=1)
    assert 120 <= result["minutes"] <= 180


def test_the_pe_session_matches_the_published_bands_and_the_cache() -> None:
    """The whole 2,500 mL plasma exchange through the controller: bilirubin and IL-6 removal
    and the 24 h rebound. (The 1.0/1.5/2.0 plasma-volume rows are the physics alone, rerun
    by tests/unit/test_validation.py.)"""
    measures = _matches_bands_and_cache("pe_session", v.pe_session())
    assert measures == {"bilirubin", "il6", "rebound"}


def test_the_li_als_session_matches_the_cache() -> None:
    """The shipped Li-ALS prescription, exchange then 4 h of purification: no published
    figure to compare with (both rows n/c, the page says why), but the page must still show
    what the model gives now."""
    measures = _matches_bands_and_cache("li_als_session", v.li_als_session())
    assert measures == {"bilirubin", "il6"}
