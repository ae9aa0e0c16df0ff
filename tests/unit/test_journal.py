"""The journal file on its own: schema versions, commits before subscribers, reading back."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from controller import journal as jr
from controller.journal import Committed, Journal, JournalError


def _session(j: Journal) -> int:
    return j.start_session(
        rig_id="sim-01", backend="sim", prescription="rx", mode="pe", snapshots={"rig": {"a": 1}}
    )


def test_a_new_file_gets_the_newest_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == jr.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_forward_migration_keeps_what_the_file_held(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        sid = _session(j)
        j.event(sid, 5, "transition", {"source": "idle", "dest": "self_test"})
        j.flush()
    later = (*jr.MIGRATIONS, "ALTER TABLE session ADD COLUMN operator TEXT")
    conn = jr.connect(path)
    assert jr.migrate(conn, later) == jr.SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == jr.SCHEMA_VERSION + 1
    assert conn.execute("SELECT operator, rig_id FROM session").fetchall() == [(None, "sim-01")]
    assert conn.execute("SELECT count(*) FROM event").fetchone()[0] == 1
    conn.close()


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    conn = jr.connect(path)
    with pytest.raises(sqlite3.OperationalError):
        jr.migrate(conn, (*jr.MIGRATIONS, "CREATE TABLE x (a); NOT SQL"))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == jr.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "x" not in tables
    conn.close()


def test_a_file_from_a_newer_alsctl_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={jr.SCHEMA_VERSION + 3}")
    conn.close()
    with pytest.raises(JournalError, match="newer than this alsctl knows"):
        Journal(path)


def test_subscribers_see_an_event_only_once_it_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    seen: list[tuple[Committed, bool]] = []
    done = threading.Event()

    def on_commit(events: list[Committed]) -> None:
        # read with a connection of our own: the row must already be there
        conn = jr.connect(path, readonly=True)
        for e in events:
            row = conn.execute("SELECT kind FROM event WHERE id = ?", (e.id,)).fetchone()
            seen.append((e, row == (e.kind,)))
        conn.close()
        done.set()

    with Journal(path) as j:
        j.subscribe(on_commit)
        sid = _session(j)
        j.event(sid, 1200, "alarm", {"kind": "raised", "alarm": "air_return"})
        assert done.wait(10)
    assert [(e.kind, e.t_ms, ok) for e, ok in seen] == [("alarm", 1200, True)]


def test_checkpoints_are_coalesced_and_the_session_follows_them(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        sid = _session(j)
        for t in range(0, 5000, 100):
            j.checkpoint(sid, t, "exchange", {"t": t})
            j.trend(sid, t, t % 1000 != 0, {"map": 80})
        j.flush()
        row = jr.sessions(path)[0]
        assert (row.state, row.rig_time_ms, row.ended_utc) == ("exchange", 4900, None)
        j.end_session(sid, "done", 5000, "completed")
        j.flush()
    rec = jr.load(path, sid)
    assert rec.checkpoint == {"t": 4900}
    assert rec.snapshots == {"rig": {"a": 1}}
    assert len(rec.trends) == 50 and sum(not full for _t, full, _b in rec.trends) == 5
    assert (rec.row.state, rec.row.completed) == ("done", True) and rec.row.ended_utc


def test_an_unknown_session_names_the_ones_there_are(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        _session(j)
    with pytest.raises(JournalError, match=r"no session 7 .*sessions: \[1\]"):
        jr.load(path, 7)
    with pytest.raises(JournalError, match="no journal"):
        jr.sessions(tmp_path / "none.db")


def test_a_report_reads_a_long_session_thinned_chunk_by_chunk(tmp_path: Path) -> None:
    """24 h of 1 Hz rows (and full-rate ones) in the file; the report keeps about 2,000."""
    path = tmp_path / "j.db"
    with Journal(path) as j:
        sid = j.start_session(rig_id="r", backend="sim", prescription="x", mode="pe", snapshots={})
        for t in range(0, 24 * 3_600_000, 1000):
            j.trend(sid, t, False, {"t": t})
            if t % 600_000 == 0:
                j.trend(sid, t, True, {"t": t})
        j.end_session(sid, "done", 24 * 3_600_000, "completed")
        j.flush()
    kept = jr.thinned_trends(path, sid, 2000)
    assert 1900 <= len(kept) <= 2100
    times = [t for t, _full, _row in kept]
    assert times == sorted(times) and times[0] == 0 and times[-1] >= 23.9 * 3_600_000
    assert not any(full for _t, full, _row in kept)  # plots draw the 1 Hz rows


def _ended(j: Journal, rig_id: str = "sim-01", events: int = 3) -> tuple[int, list[int]]:
    """A session of `rig_id` with `events` events, ended; its event ids."""
    sid = j.start_session(rig_id=rig_id, backend="sim", prescription="rx", mode="pe", snapshots={})
    for n in range(events):
        j.event(sid, n, "note", {"note": f"{n}"})
    j.end_session(sid, "done", events, "completed")
    j.flush()
    return sid, [e.id for e in jr.load(j.path, sid, trends=False).events]


def _delivered_rows(path: Path) -> list[tuple[int, str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT session, stream, last_id FROM delivered ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


def test_delivered_is_one_row_per_session_and_stream_and_only_moves_forward(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        sid, ids = _ended(j)
        j.delivered(sid, "mqtt", 0)
        for i in ids:  # a publisher says so after every acknowledgement
            j.delivered(sid, "mqtt", i)
        j.delivered(sid, "mqtt", ids[0])  # late news never moves it back
        j.delivered(sid, "other", ids[0])
        j.delivered(999, "mqtt", 5)  # a session the file does not have: skipped, no failure
        j.flush()
        assert j.unavailable is None
        j.delivered(sid, "mqtt", 0)
        j.flush()
    assert _delivered_rows(path) == [(sid, "mqtt", ids[-1]), (sid, "other", ids[0])]


def test_undelivered_is_what_published_sessions_of_the_rig_left_in_journal_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        never, _ = _ended(j)  # ran without MQTT: not replayed
        done, done_ids = _ended(j)
        j.delivered(done, "mqtt", done_ids[-1])  # every event acknowledged
        half, half_ids = _ended(j)
        j.delivered(half, "mqtt", half_ids[0])
        other, other_ids = _ended(j, rig_id="bench-01")
        j.delivered(other, "mqtt", 0)
        none, none_ids = _ended(j)
        j.delivered(none, "mqtt", 0)  # published, nothing acknowledged
        live = _session(j)  # this process writes it: its publisher's, not a replay
        j.event(live, 0, "note", {"note": "live"})
        j.delivered(live, "mqtt", 0)
        j.flush()
        got = j.undelivered("sim-01", "mqtt")
        assert [e.id for e in got] == half_ids[1:] + none_ids
        assert [e.session for e in got] == [half] * 2 + [none] * 3
        assert got[0].kind == "note" and got[0].body == {"note": "1"}
        assert [e.id for e in j.undelivered("bench-01", "mqtt")] == other_ids
        assert j.undelivered("sim-01", "other") == []
        assert [e.id for e in j.undelivered("sim-01", "mqtt", limit=3)] == [
            *half_ids[1:],
            none_ids[0],
        ]
        # the session being resumed is taken whatever its heartbeat says
        with_live = j.undelivered("sim-01", "mqtt", include=live)
        assert [e.session for e in with_live][-1] == live
        assert never not in {e.session for e in with_live}


def test_a_journal_from_before_delivery_marks_replays_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = jr.connect(path)
    jr.migrate(conn, jr.MIGRATIONS[:2])  # what alsctl wrote before schema 3
    conn.execute(
        "INSERT INTO session (started_utc, rig_id, backend, prescription, mode, state)"
        " VALUES ('2026-01-01T00:00:00+00:00', 'sim-01', 'sim', 'rx', 'pe', 'exchange')"
    )
    conn.execute("INSERT INTO event VALUES (1, 1, 0, 'note', '{\"note\": \"old\"}')")
    conn.close()
    with Journal(path) as j:
        assert j.undelivered("sim-01", "mqtt") == []
        sid, ids = _ended(j)
        j.delivered(sid, "mqtt", 0)
        j.flush()
        assert [e.id for e in j.undelivered("sim-01", "mqtt")] == ids
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == jr.SCHEMA_VERSION == 3
    conn.close()
