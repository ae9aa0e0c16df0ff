"""The shipped DPMAS prescription as the validation bench runs it: in its bands, and the same
values as docs/validation.json holds (the unit test checks the page against that file)."""

from __future__ import annotations

import json

import pytest

from bench import validation as v


def test_the_shipped_dpmas_session_matches_the_published_bands_and_the_cache() -> None:
    result = v.dpmas_session()
    cached = {r["key"]: r for r in json.loads(v.CACHE.read_text())["rows"]}
    specs = [s for s in v.SPECS if s.experiment == "dpmas_session"]
    assert {s.measure for s in specs} >= {"bilirubin", "minutes", "patient_plasma_ml"}
    for spec in specs:
        row = v.Row(spec, result[spec.measure])
        assert row.status in ("pass", "n/c"), (spec.key, row.model)
        assert cached[spec.key]["model"] == pytest.approx(round(row.model, 3), abs=1e-3)
    # it is the patient's plasma, not the loop's, that ends it: 3-4.5 L in 2-3 h
    assert result["patient_plasma_ml"] == pytest.approx(4500, abs=1)
    assert 120 <= result["minutes"] <= 180
