"""bench/validation.py: the fast rows (the physics alone) rerun here and stay in their bands,
and docs/validation.md is what the bench writes.

The session rows (whole treatments, about a minute) are not rerun here: the page is checked
against docs/validation.json, where `python -m bench.validation --write` put their values,
and tests/integration/test_validation_sessions.py reruns the DPMAS, PE (2,500 mL) and Li-ALS
sessions against it (about 9, 4 and 19 s). The BR-350 session is the one not rerun.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import validation as v


@pytest.fixture(scope="module")
def fast_rows() -> list[v.Row]:
    results, _ = v.run_experiments(fast_only=True)
    return v.rows(results)


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(v.CACHE.read_text())
    return data


def test_every_fast_row_is_inside_its_band_or_says_why_not(fast_rows: list[v.Row]) -> None:
    assert {r.spec.key for r in fast_rows} == {s.key for s in v.SPECS if s.fast}
    assert len(fast_rows) >= 15
    for row in fast_rows:
        if row.spec.band is None:
            assert row.status == "n/c" and len(row.spec.note) > 40, row.spec.key
            assert row.spec.source in row.as_json()["source"]
        else:
            assert row.status == "pass", (row.spec.key, row.model, row.spec.band)


def test_the_cached_values_are_the_fast_rows_rerun_now(
    fast_rows: list[v.Row], cache: dict[str, Any]
) -> None:
    cached = {r["key"]: r for r in cache["rows"]}
    assert set(cached) == {s.key for s in v.SPECS}  # every row, in the spec's order
    for row in fast_rows:
        assert cached[row.spec.key]["model"] == round(row.model, 3), row.spec.key


def test_every_cached_row_is_in_its_band_or_explained(cache: dict[str, Any]) -> None:
    for row in v.table_from_cache(cache):
        assert row.status in ("pass", "n/c"), (row.spec.key, row.model)
        assert row.spec.band is not None or row.spec.note


def test_docs_validation_md_is_what_the_bench_writes(cache: dict[str, Any]) -> None:
    written = v.DOC.read_text()
    assert written == v.render(v.table_from_cache(cache)), (
        "docs/validation.md is stale: run `python -m bench.validation --write`"
    )
    assert "{{" not in written  # every placeholder of the template filled
