"""What journaling costs the control loop: the default treatment at full simulation speed,
without a journal (the peer, measured in the same run), with the recorder feeding a journal
that drops everything (the loop's own share), and with the real SQLite journal (writer
thread, WAL, synchronous=FULL), printed as JSON. Best of `--repeat` runs each.

At full speed the loop never waits, so every microsecond the writer thread holds the GIL is
lost to it; at real time the loop idles 99 % of each cycle and the same work is invisible.

Usage: python -m bench.journal_cost [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.journal import Journal, JournalHealth


class NullJournal(Journal):
    """Takes every row and keeps none: what the recorder alone costs the loop."""

    def __init__(self) -> None:
        self.rows = 0
        self.health = JournalHealth()

    def _put(self, kind: str, item: Any) -> None:
        self.rows += 1

    def start_session(self, **_kw: Any) -> int:
        return 1

    def flush(self, timeout: float = 0.0) -> None:
        return None


def _once(journal: Journal | None) -> tuple[float, float]:
    rig = load_rig("config/rigs/sim.yaml")
    rx = load_prescription("config/prescriptions/li_als.yaml")
    start = time.perf_counter()
    summary, _ = asyncio.run(run_treatment(rig, rx, RunOptions(gate=CLEAR, journal=journal)))
    assert summary.completed, summary.error
    return time.perf_counter() - start, summary.rig_time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"no_journal": [], "recorder_only": [], "sqlite": []}
    rig_s = 0.0
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            wall, rig_s = _once(None)
            walls["no_journal"].append(wall)
            walls["recorder_only"].append(_once(NullJournal())[0])
            path = Path(tmp) / f"j{i}.db"
            with Journal(path) as journal:
                walls["sqlite"].append(_once(journal)[0])
            record = jr.load(path, 1)
            facts = {
                "file_mb": round(
                    sum(p.stat().st_size for p in Path(tmp).glob(f"j{i}.db*")) / 1e6, 1
                ),
                "events": len(record.events),
                "trend_rows": len(record.trends),
            }
    best = {k: min(v) for k, v in walls.items()}
    result = {
        "bench": "journal_cost",
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "rig_s": rig_s,
        "wall_s": {k: round(v, 2) for k, v in best.items()},
        "x_real_time": {k: round(rig_s / v) for k, v in best.items()},
        "overhead": {
            "recorder_only": round(best["recorder_only"] / best["no_journal"] - 1, 3),
            "sqlite": round(best["sqlite"] / best["no_journal"] - 1, 3),
        },
        "journal": facts,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
