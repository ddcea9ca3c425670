"""The arena's SQLite store: schema, concurrency, vote validation, exports."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

import studio.arena.store as store_module
from studio.arena.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    VOTE_FIELDS,
    ArenaStore,
    CampaignNotFoundError,
    DuplicateVoteError,
    InvalidChoiceError,
    RaterCapReachedError,
    RaterError,
    UnknownBattleError,
    export_votes,
    load_export,
)
from studio.errors import StudioError


def _store_with_battles(directory: Path, n_battles: int, synchronous: str = "FULL"
                        ) -> tuple[ArenaStore, list[tuple[int, int, int]]]:
    """Two contenders and `n_battles` battles (one prompt each), without image files (the store does not
    look at them). Returns the store and (battle_id, contender_a, contender_b) triples."""
    store = ArenaStore(directory, create=True, synchronous=synchronous)
    store.set_meta("name", "t")
    ca = store.add_contender("a" * 16, "wa", "models/a", {"sampler": "ddim", "steps": 10, "guidance": 2.0}, "A")
    cb = store.add_contender("b" * 16, "wb", "models/b", {"sampler": "ddim", "steps": 20, "guidance": 2.0}, "B")
    rows = []
    for i in range(n_battles):
        pid = store.add_prompt(f"prompt {i}")
        ia = store.add_image(ca, pid, 0, f"images/a{i}.png", "0" * 64)
        ib = store.add_image(cb, pid, 0, f"images/b{i}.png", "1" * 64)
        rows.append((pid, 0, ca, ia, cb, ib))
    assert store.add_battles(rows) == n_battles
    assert store.add_battles(rows) == 0  # idempotent
    battles = [(int(r["id"]), int(r["contender_a"]), int(r["contender_b"])) for r in store.battle_loads(0, 0.0)]
    return store, battles


def _serve_and_vote(store: ArenaStore, rater: str, battle: tuple[int, int, int], choice: str) -> int:
    rid = store.rater_id(rater)
    token = store.create_impression(rid, battle[0], battle[1], battle[2])
    assert token is not None
    return store.record_vote(token, choice, app_version="test")


def test_schema_pragmas_and_version(tmp_path: Path) -> None:
    with ArenaStore(tmp_path, create=True) as store:
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"schema_version", "meta", "prompts", "contenders", "images", "battles", "raters", "impressions",
                "votes"} <= tables
    with ArenaStore(tmp_path) as again:  # reopening does not migrate twice
        assert again.schema_version == SCHEMA_VERSION
    with pytest.raises(CampaignNotFoundError, match="studio arena build"):
        ArenaStore(tmp_path / "nothing-here")


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with ArenaStore(tmp_path, create=True) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.add_image(999, 999, 0, "images/x.png", "0" * 64)


def test_sql_is_parameterised() -> None:
    source = Path(store_module.__file__).read_text()
    assert not re.search(r"execute(many)?\(\s*f[\"']", source), "SQL must not be built with f-strings"
    assert ".format(" not in source


def test_concurrent_votes_are_all_stored(tmp_path: Path) -> None:
    """20 threads x 200 votes (distinct raters, so no legitimate duplicates) -> exactly 4000 votes.
    NORMAL sync keeps it fast (FULL only adds an fsync per commit; locking is the same)."""
    store, battles = _store_with_battles(tmp_path, 200, synchronous="NORMAL")
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def rater(t: int) -> None:
        try:
            barrier.wait()
            for i, battle in enumerate(battles):
                _serve_and_vote(store, f"rater-{t}", battle, ("left", "right", "tie", "both_bad")[(t + i) % 4])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=rater, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    assert store.vote_count() == 4000
    # Visible to an independent connection: every vote was committed.
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 4000
        assert other.execute("SELECT COUNT(DISTINCT rater_id) FROM votes").fetchone()[0] == 20
    store.close()


def test_vote_is_committed_before_returning(tmp_path: Path) -> None:
    store, battles = _store_with_battles(tmp_path, 1)
    vote_id = _serve_and_vote(store, "alice", battles[0], "tie")
    with sqlite3.connect(store.path) as other:
        row = other.execute("SELECT choice, app_version FROM votes WHERE id = ?", (vote_id,)).fetchone()
    assert row == ("tie", "test")
    store.close()


def test_bad_votes_are_rejected(tmp_path: Path) -> None:
    store, battles = _store_with_battles(tmp_path, 2)
    rid = store.rater_id("alice")
    token = store.create_impression(rid, *battles[0])
    # malformed choice: nothing stored, the battle stays open
    for bad in ("middle", "", "LEFTT", 3):
        with pytest.raises(InvalidChoiceError, match="left, right, tie, both_bad"):
            store.record_vote(token, bad, app_version="t")  # type: ignore[arg-type]
    assert store.vote_count() == 0
    # unknown battle
    with pytest.raises(UnknownBattleError, match="unknown battle"):
        store.record_vote("no-such-token", "left", app_version="t")
    # case and spelling are forgiven
    store.record_vote(token, " Both-Bad ", app_version="t")
    # duplicate: the same token again, and the same battle served again to the same rater
    with pytest.raises(DuplicateVoteError, match="already has your vote"):
        store.record_vote(token, "left", app_version="t")
    assert store.create_impression(rid, *battles[0]) is None
    assert store.vote_count() == 1
    assert store.votes()[0].choice == "both_bad"
    # all are user-facing errors
    assert issubclass(InvalidChoiceError, StudioError) and issubclass(DuplicateVoteError, StudioError)
    with pytest.raises(RaterError):
        store.rater_id("   ")
    store.close()


def test_cap_is_enforced_in_the_store(tmp_path: Path) -> None:
    store, battles = _store_with_battles(tmp_path, 3)
    rid = store.rater_id("bob")
    t0 = store.create_impression(rid, *battles[0], max_votes=1)
    store.record_vote(t0, "left", app_version="t", max_votes=1)
    with pytest.raises(RaterCapReachedError, match="limit of 1"):
        store.create_impression(rid, *battles[1], max_votes=1)
    store.close()


def test_skip_and_mark_shown(tmp_path: Path) -> None:
    store, battles = _store_with_battles(tmp_path, 2)
    rid = store.rater_id("carol")
    token = store.create_impression(rid, *battles[0])
    assert store.pending_impression(rid)["token"] == token
    store.mark_shown(token)
    assert store.impression(token)["shown_at"] is not None
    store.skip(token)
    assert store.pending_impression(rid) is None
    with pytest.raises(StudioError, match="skipped"):
        store.record_vote(token, "left", app_version="t")
    store.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_export_round_trip(tmp_path: Path, suffix: str) -> None:
    store, battles = _store_with_battles(tmp_path / "c", 4)
    for i, battle in enumerate(battles):
        _serve_and_vote(store, "alice", battle, ("left", "right", "tie", "both_bad")[i])
        _serve_and_vote(store, "bob, with a comma and \"quotes\"", battle, "left")
    votes = store.votes()
    assert len(votes) == 8
    v = votes[0]
    assert v.winner == v.left_contender and v.left_name in ("A", "B") and v.decision_seconds >= 0
    assert v.voted_at.endswith("Z") and v.app_version == "test"
    path = export_votes(votes, tmp_path / f"votes{suffix}")
    loaded = load_export(path)
    assert loaded == votes
    assert list(loaded[0].to_dict()) == list(VOTE_FIELDS)
    store.close()


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(StudioError, match=".jsonl or .csv"):
        export_votes([], tmp_path / "votes.txt")
    with pytest.raises(StudioError, match="no vote export"):
        load_export(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"vote_id": 1}\n')
    with pytest.raises(StudioError, match="lacks the fields"):
        load_export(bad)
