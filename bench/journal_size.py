"""What a journal costs on disk and what a report costs in memory, printed as JSON.

- journal growth: the default Li-ALS treatment journaled for real; file size per rig hour;
- report memory: a 24 h session (the treatment's trend rows repeated to 24 h of rig time, and
  its events), its report rendered by `alsctl report` in a process of its own; peak RSS. The
  peer, measured in the same run, is the same process importing everything and loading the
  session's events but rendering nothing: what any report must pay before its first plot.
- concurrency: `--concurrent N` runs on one new journal file at once (default 20): all
  complete, in sessions of their own; their wall time.

Usage: python -m bench.journal_size [--hours 24] [--concurrent 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller import journal as jr
from controller.app import CLEAR, RunOptions, run_treatment
from controller.config.loading import load_prescription, load_rig
from controller.journal import Journal


def journal_growth(folder: Path) -> tuple[Path, float, float]:
    """The default treatment, journaled: (file, MB, rig hours)."""
    db = folder / "real.db"
    rig = load_rig("config/rigs/sim.yaml")
    rx = load_prescription("config/prescriptions/li_als.yaml")
    with Journal(db) as journal:
        summary, _ = asyncio.run(run_treatment(rig, rx, RunOptions(gate=CLEAR, journal=journal)))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db, db.stat().st_size / 1e6, summary.rig_time_s / 3600


def long_session(real: Path, folder: Path, hours: float) -> Path:
    """A session of `hours` of rig time: the real one's trend chunks and events repeated."""
    db = folder / "long.db"
    Journal(db).close()
    src = sqlite3.connect(real)
    dst = sqlite3.connect(db)
    (span,) = src.execute("SELECT rig_time_ms FROM session WHERE id = 1").fetchone()
    row = src.execute("SELECT * FROM session WHERE id = 1").fetchone()
    dst.execute(f"INSERT INTO session VALUES ({','.join('?' * len(row))})", row)
    dst.executemany(
        "INSERT INTO snapshot VALUES (?, ?, ?)",
        src.execute("SELECT session, kind, body FROM snapshot WHERE session = 1"),
    )
    chunks = src.execute("SELECT full_rate, first_ms, last_ms, rows FROM trend").fetchall()
    events = src.execute("SELECT t_ms, kind, body FROM event ORDER BY id").fetchall()
    repeats = max(1, round(hours * 3.6e6 / span))
    next_id = 1
    for k in range(repeats):
        shift = k * span
        rows = []
        for full, first, last, text in chunks:
            body = [[t + shift, r] for t, r in json.loads(text)]
            rows.append((1, first + shift, last + shift, full, json.dumps(body)))
        dst.executemany("INSERT INTO trend VALUES (?, ?, ?, ?, ?)", rows)
        dst.executemany(
            "INSERT INTO event VALUES (?, 1, ?, ?, ?)",
            [(next_id + n, t + shift, kind, body) for n, (t, kind, body) in enumerate(events)],
        )
        next_id += len(events)
        dst.commit()
    dst.execute("UPDATE session SET rig_time_ms = ?", (repeats * span,))
    dst.commit()
    src.close()
    dst.close()
    return db


def peak_mb(code: str) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of `python -c code` in a fresh process (it reports its
    own peak: RUSAGE_CHILDREN would mix it with the children before it)."""
    tail = ";import resource;print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + tail], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    kb = int(done.stdout.rsplit("peak", 1)[1])
    return kb / 1024, wall


def concurrent(folder: Path, n: int) -> dict[str, object]:
    from tests.integration.test_journal_concurrency import concurrent_runs

    start = time.perf_counter()
    done = concurrent_runs(folder, n)
    wall = time.perf_counter() - start
    rows = jr.sessions(folder / "shared.db")
    return {
        "runs": n,
        "completed": sum(r.returncode == 0 for r in done),
        "distinct_sessions": len({r.id for r in rows}),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        real, mb, rig_h = journal_growth(folder)
        long = long_session(real, folder, args.hours)
        baseline, _ = peak_mb(
            f"from controller import journal, report;journal.load({str(long)!r}, 1, trends=False)"
        )
        out = str(folder / "r.html")
        report, wall = peak_mb(
            "from controller.cli import main;"
            f"main(['report', '1', '--journal', {str(long)!r}, '--out', {out!r}])"
        )
        (folder / "many").mkdir()
        many = concurrent(folder / "many", args.concurrent) if args.concurrent else None
        print(
            json.dumps(
                {
                    "bench": "journal_size",
                    "machine": {"python": platform.python_version(), "cpu": platform.machine()},
                    "journal_mb_per_rig_hour": round(mb / rig_h, 2),
                    "journal_mb_default_treatment": round(mb, 2),
                    "report_session_hours": args.hours,
                    "report_session_journal_mb": round(long.stat().st_size / 1e6, 1),
                    "report_peak_mb": round(report, 1),
                    "report_wall_s": round(wall, 1),
                    "peer_load_events_only_peak_mb": round(baseline, 1),
                    "concurrent": many,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
