"""The arena's SQLite store: one `arena.sqlite` file per campaign directory.

Design rules (see docs/arena.md):
- WAL journal, foreign keys on, `busy_timeout` set, parameterised SQL only (no values formatted into SQL).
- A schema version table and an append-only `MIGRATIONS` list: opening an older file upgrades it in place.
- A connection per thread; writes are serialised by a process lock and `BEGIN IMMEDIATE` (other processes
  wait on `busy_timeout`). Every vote is committed before `record_vote` returns.
- A rater votes at most once per battle (UNIQUE(rater_id, battle_id) on impressions and on votes).

The schema lives in `studio.arena.schema`, the errors and records in `studio.arena.records`, exports in
`studio.arena.exports`; their names are importable from here too.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from studio.arena.exports import EXPORT_FORMATS, export_votes, load_export
from studio.arena.records import (MAX_RATER_NAME, VOTE_CHOICES, VOTE_FIELDS, ArenaError, CampaignNotFoundError,
                                  ContenderRow, DuplicateVoteError, InvalidChoiceError, NoBattlesLeftError,
                                  RaterCapReachedError, RaterError, UnknownBattleError, VoteRecord, _cap_message,
                                  iso_time, normalise_choice, normalise_rater)
from studio.arena.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "DB_NAME", "BUSY_TIMEOUT_MS", "ArenaStore",
    # studio.arena.records
    "MAX_RATER_NAME", "VOTE_CHOICES", "VOTE_FIELDS", "ArenaError", "CampaignNotFoundError", "ContenderRow",
    "DuplicateVoteError", "InvalidChoiceError", "NoBattlesLeftError", "RaterCapReachedError", "RaterError",
    "UnknownBattleError", "VoteRecord", "iso_time", "normalise_choice", "normalise_rater",
    # studio.arena.schema, studio.arena.exports
    "MIGRATIONS", "SCHEMA_VERSION", "EXPORT_FORMATS", "export_votes", "load_export",
]

DB_NAME = "arena.sqlite"
BUSY_TIMEOUT_MS = 30_000
# PRAGMAs take no parameters: the statements are fixed strings, chosen by key.
_SYNCHRONOUS = {"FULL": "PRAGMA synchronous = FULL", "NORMAL": "PRAGMA synchronous = NORMAL"}


# ----------------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------------
class ArenaStore:
    """Thread-safe access to one campaign's `arena.sqlite`.

    `ArenaStore(directory, create=True)` makes the file if needed; without `create` a missing campaign is an
    error. Safe to share between threads (a connection per thread, writes serialised).

    `synchronous="FULL"` (default) syncs the WAL at every commit, so a vote survives a power cut (~ms per
    commit); `"NORMAL"` survives an application crash only and is much faster for bulk work and tests."""

    def __init__(self, directory: str | Path, *, create: bool = False, synchronous: str = "FULL") -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ArenaError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}")
        self.synchronous = synchronous
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if not self.path.exists():
            if not create:
                raise CampaignNotFoundError(
                    f"no arena campaign in {self.directory} ({DB_NAME} is missing): "
                    "create one with `studio arena build --out DIR ...`"
                )
            self.directory.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._migrate()

    # -- connections -------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")  # = BUSY_TIMEOUT_MS (PRAGMA takes no parameters)
            conn.execute(_SYNCHRONOUS[self.synchronous])
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on leaving (rolled back on an exception)."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every connection this store opened (any thread's)."""
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> ArenaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0])
            if version > SCHEMA_VERSION:
                raise ArenaError(
                    f"{self.path} has arena schema version {version}, newer than this studio's {SCHEMA_VERSION}: "
                    "upgrade the studio package"
                )
            for sql in MIGRATIONS[version:]:
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        return int(self._read("SELECT version FROM schema_version")[0][0])

    # -- campaign settings -------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def meta(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._read("SELECT key, value FROM meta ORDER BY key")}

    # -- prompts, contenders, images, battles ----------------------------------------------------------
    def add_prompt(self, text: str) -> int:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO prompts (text) VALUES (?)", (text,))
            return int(conn.execute("SELECT id FROM prompts WHERE text = ?", (text,)).fetchone()[0])

    def prompts(self) -> list[tuple[int, str]]:
        return [(int(r["id"]), r["text"]) for r in self._read("SELECT id, text FROM prompts ORDER BY id")]

    def add_contender(self, key: str, weights_hash: str, model: str, settings: dict[str, Any], name: str) -> int:
        """Insert a contender (or return the existing one with this key; its display name is kept)."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM contenders WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return int(row[0])
            clash = conn.execute("SELECT key FROM contenders WHERE name = ?", (name,)).fetchone()
            if clash is not None:
                raise ArenaError(
                    f"display name {name!r} is already used by another contender ({clash[0]}): "
                    "give this one a different name (e.g. `MODEL@name=...`)"
                )
            cur = conn.execute(
                "INSERT INTO contenders (key, weights_hash, model, settings, name) VALUES (?, ?, ?, ?, ?)",
                (key, weights_hash, model, json.dumps(settings, sort_keys=True), name),
            )
            return int(cur.lastrowid)

    def contenders(self) -> list[ContenderRow]:
        rows = self._read("SELECT id, key, weights_hash, model, settings, name FROM contenders ORDER BY id")
        return [
            ContenderRow(int(r["id"]), r["key"], r["weights_hash"], r["model"], json.loads(r["settings"]), r["name"])
            for r in rows
        ]

    def add_image(self, contender_id: int, prompt_id: int, seed: int, path: str, sha256: str) -> int:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO images (contender_id, prompt_id, seed, path, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contender_id, prompt_id, seed) DO UPDATE SET path = excluded.path,"
                " sha256 = excluded.sha256, created_at = excluded.created_at",
                (contender_id, prompt_id, int(seed), path, sha256, time.time()),
            )
            return int(conn.execute(
                "SELECT id FROM images WHERE contender_id = ? AND prompt_id = ? AND seed = ?",
                (contender_id, prompt_id, int(seed)),
            ).fetchone()[0])

    def image(self, contender_id: int, prompt_id: int, seed: int) -> sqlite3.Row | None:
        rows = self._read(
            "SELECT id, path, sha256 FROM images WHERE contender_id = ? AND prompt_id = ? AND seed = ?",
            (contender_id, prompt_id, int(seed)),
        )
        return rows[0] if rows else None

    def images(self) -> list[sqlite3.Row]:
        return self._read("SELECT id, contender_id, prompt_id, seed, path, sha256 FROM images ORDER BY id")

    def add_battle(self, prompt_id: int, seed: int, contender_x: int, image_x: int, contender_y: int,
                   image_y: int) -> int:
        """Insert (or find) the battle between two contenders' images for one prompt and seed."""
        if contender_x == contender_y:
            raise ArenaError("a battle needs two different contenders")
        if contender_x > contender_y:
            contender_x, image_x, contender_y, image_y = contender_y, image_y, contender_x, image_x
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO battles"
                " (prompt_id, seed, contender_a, contender_b, image_a, image_b, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (prompt_id, int(seed), contender_x, contender_y, image_x, image_y, time.time()),
            )
            return int(conn.execute(
                "SELECT id FROM battles WHERE prompt_id = ? AND seed = ? AND contender_a = ? AND contender_b = ?",
                (prompt_id, int(seed), contender_x, contender_y),
            ).fetchone()[0])

    def add_battles(self, battles: list[tuple[int, int, int, int, int, int]]) -> int:
        """Insert many (prompt_id, seed, contender_x, image_x, contender_y, image_y) battles in one
        transaction (existing ones are kept); returns how many were new."""
        rows = []
        for prompt_id, seed, cx, ix, cy, iy in battles:
            if cx == cy:
                raise ArenaError("a battle needs two different contenders")
            if cx > cy:
                cx, ix, cy, iy = cy, iy, cx, ix
            rows.append((prompt_id, int(seed), cx, cy, ix, iy, time.time()))
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO battles"
                " (prompt_id, seed, contender_a, contender_b, image_a, image_b, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

    def battle_keys(self) -> set[tuple[int, int, int, int]]:
        """(prompt_id, seed, contender_a, contender_b) of every battle."""
        rows = self._read("SELECT prompt_id, seed, contender_a, contender_b FROM battles")
        return {(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def battle_loads(self, rater_id: int, pending_since: float) -> list[sqlite3.Row]:
        """Every battle with its load (votes + impressions still pending since `pending_since`) and whether
        this rater has already been shown it: the scheduler's input."""
        return self._read(
            "SELECT b.id, b.contender_a, b.contender_b, b.prompt_id, b.seed,"
            " (SELECT COUNT(*) FROM impressions i WHERE i.battle_id = b.id"
            "   AND (i.status = 'voted' OR (i.status = 'pending' AND i.served_at >= ?))) AS load,"
            " EXISTS (SELECT 1 FROM impressions j WHERE j.battle_id = b.id AND j.rater_id = ?) AS seen"
            " FROM battles b ORDER BY b.id",
            (pending_since, rater_id),
        )

    def battle_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM battles")[0][0])

    # -- raters and impressions ---------------------------------------------------------------------------
    def rater_id(self, name: str, *, create: bool = True) -> int:
        name = normalise_rater(name)
        rows = self._read("SELECT id FROM raters WHERE name = ?", (name,))
        if rows:
            return int(rows[0][0])
        if not create:
            raise RaterError(f"unknown rater {name!r}: ask for a battle first to register")
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO raters (name, created_at) VALUES (?, ?)", (name, time.time()))
            return int(conn.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()[0])

    def raters(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM raters ORDER BY id")]

    def rater_vote_count(self, rater_id: int) -> int:
        return int(self._read("SELECT COUNT(*) FROM votes WHERE rater_id = ?", (rater_id,))[0][0])

    def pending_impression(self, rater_id: int) -> sqlite3.Row | None:
        """The rater's oldest impression that was served but neither voted nor skipped (e.g. after a reload)."""
        rows = self._read(
            "SELECT token FROM impressions WHERE rater_id = ? AND status = 'pending' ORDER BY id LIMIT 1",
            (rater_id,),
        )
        return self.impression(rows[0][0]) if rows else None

    def create_impression(self, rater_id: int, battle_id: int, left_contender: int, right_contender: int, *,
                          max_votes: int | None = None) -> str | None:
        """Record that a battle is served to a rater with this left/right assignment; returns its token, or
        None when the rater has already been served this battle. Raises when the rater's cap is reached."""
        token = secrets.token_urlsafe(16)
        with self._write() as conn:
            if max_votes is not None:
                used = conn.execute(
                    "SELECT COUNT(*) FROM impressions WHERE rater_id = ? AND status IN ('pending', 'voted')",
                    (rater_id,),
                ).fetchone()[0]
                if used >= max_votes:
                    raise RaterCapReachedError(_cap_message(max_votes))
            cur = conn.execute(
                "INSERT OR IGNORE INTO impressions (token, rater_id, battle_id, left_contender, right_contender,"
                " served_at) VALUES (?, ?, ?, ?, ?, ?)",
                (token, rater_id, battle_id, left_contender, right_contender, time.time()),
            )
            return token if cur.rowcount == 1 else None

    _IMPRESSION_SQL = (
        "SELECT i.id, i.token, i.rater_id, r.name AS rater, i.battle_id, i.left_contender, i.right_contender,"
        " i.served_at, i.shown_at, i.status, p.text AS prompt, b.seed, b.contender_a, b.image_a, b.image_b,"
        " ia.path AS path_a, ib.path AS path_b"
        " FROM impressions i JOIN raters r ON r.id = i.rater_id JOIN battles b ON b.id = i.battle_id"
        " JOIN prompts p ON p.id = b.prompt_id JOIN images ia ON ia.id = b.image_a JOIN images ib ON ib.id = b.image_b"
        " WHERE i.token = ?"
    )

    def impression(self, token: str) -> sqlite3.Row:
        rows = self._read(self._IMPRESSION_SQL, (str(token),))
        if not rows:
            raise UnknownBattleError(
                f"unknown battle {token!r}: it was never served by this campaign; ask for a new battle"
            )
        return rows[0]

    def mark_shown(self, token: str) -> None:
        """Record when the UI actually displayed both images (first call wins)."""
        self.impression(token)
        with self._write() as conn:
            conn.execute("UPDATE impressions SET shown_at = ? WHERE token = ? AND shown_at IS NULL",
                         (time.time(), str(token)))

    def skip(self, token: str) -> None:
        """Drop a served battle without voting: the rater is never shown it again."""
        with self._write() as conn:
            row = conn.execute("SELECT status FROM impressions WHERE token = ?", (str(token),)).fetchone()
            if row is None:
                raise UnknownBattleError(f"unknown battle {token!r}: nothing to skip")
            if row[0] == "voted":
                raise DuplicateVoteError("this battle already has your vote: it cannot be skipped")
            conn.execute("UPDATE impressions SET status = 'skipped' WHERE token = ?", (str(token),))

    # -- votes ------------------------------------------------------------------------------------------------
    def record_vote(self, token: str, choice: str, *, app_version: str, max_votes: int | None = None) -> int:
        """Store one vote for a served battle and commit it before returning its id.

        Rejects a malformed choice, an unknown token, a second vote on the same battle and a vote beyond the
        rater's cap, each with its own `ArenaError` subclass."""
        choice = normalise_choice(choice)
        now = time.time()
        with self._write() as conn:
            imp = conn.execute(
                "SELECT id, rater_id, battle_id, left_contender, right_contender, served_at, shown_at, status"
                " FROM impressions WHERE token = ?",
                (str(token),),
            ).fetchone()
            if imp is None:
                raise UnknownBattleError(
                    f"unknown battle {token!r}: it was never served by this campaign; ask for a new battle"
                )
            if imp["status"] == "voted":
                raise DuplicateVoteError("this battle already has your vote (one vote per rater and battle)")
            if imp["status"] == "skipped":
                raise ArenaError("this battle was skipped and can no longer be voted on: ask for a new battle")
            if max_votes is not None:
                n = conn.execute("SELECT COUNT(*) FROM votes WHERE rater_id = ?", (imp["rater_id"],)).fetchone()[0]
                if n >= max_votes:
                    raise RaterCapReachedError(_cap_message(max_votes))
            shown = imp["shown_at"] if imp["shown_at"] is not None else imp["served_at"]
            try:
                cur = conn.execute(
                    "INSERT INTO votes (impression_id, rater_id, battle_id, choice, left_contender, right_contender,"
                    " shown_at, voted_at, app_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (imp["id"], imp["rater_id"], imp["battle_id"], choice, imp["left_contender"],
                     imp["right_contender"], shown, now, str(app_version)),
                )
            except sqlite3.IntegrityError as err:
                raise DuplicateVoteError("this battle already has your vote (one vote per rater and battle)") from err
            conn.execute("UPDATE impressions SET status = 'voted' WHERE id = ?", (imp["id"],))
            return int(cur.lastrowid)

    def vote_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM votes")[0][0])

    def votes(self) -> list[VoteRecord]:
        """Every vote as a flat, self-describing record (the export format), oldest first."""
        campaign = str(self.get_meta("name", self.directory.name))
        contenders = {c.id: c for c in self.contenders()}
        rows = self._read(
            "SELECT v.id, r.name AS rater, v.battle_id, p.text AS prompt, b.seed, v.choice, v.left_contender,"
            " v.right_contender, b.contender_a, ia.path AS path_a, ia.sha256 AS sha_a, ib.path AS path_b,"
            " ib.sha256 AS sha_b, v.shown_at, v.voted_at, v.app_version"
            " FROM votes v JOIN raters r ON r.id = v.rater_id JOIN battles b ON b.id = v.battle_id"
            " JOIN prompts p ON p.id = b.prompt_id JOIN images ia ON ia.id = b.image_a"
            " JOIN images ib ON ib.id = b.image_b ORDER BY v.id"
        )
        out = []
        for r in rows:
            left, right = contenders[r["left_contender"]], contenders[r["right_contender"]]
            a_is_left = r["contender_a"] == left.id
            left_img = (r["path_a"], r["sha_a"]) if a_is_left else (r["path_b"], r["sha_b"])
            right_img = (r["path_b"], r["sha_b"]) if a_is_left else (r["path_a"], r["sha_a"])
            winner = {"left": left.key, "right": right.key}.get(r["choice"], "")
            out.append(VoteRecord(
                vote_id=int(r["id"]), campaign=campaign, rater=r["rater"], battle_id=int(r["battle_id"]),
                prompt=r["prompt"], seed=int(r["seed"]), choice=r["choice"], winner=winner,
                **_side("left", left, *left_img), **_side("right", right, *right_img),
                shown_at=iso_time(r["shown_at"]), voted_at=iso_time(r["voted_at"]),
                decision_seconds=round(max(0.0, r["voted_at"] - r["shown_at"]), 3), app_version=r["app_version"],
            ))
        return out

    def summary(self) -> dict[str, int]:
        """Counts of everything, for `studio arena status` and the UI."""
        q = {
            "contenders": "SELECT COUNT(*) FROM contenders", "prompts": "SELECT COUNT(*) FROM prompts",
            "images": "SELECT COUNT(*) FROM images", "battles": "SELECT COUNT(*) FROM battles",
            "raters": "SELECT COUNT(*) FROM raters", "votes": "SELECT COUNT(*) FROM votes",
            "pending": "SELECT COUNT(*) FROM impressions WHERE status = 'pending'",
            "skipped": "SELECT COUNT(*) FROM impressions WHERE status = 'skipped'",
        }
        return {k: int(self._read(sql)[0][0]) for k, sql in q.items()}


def _side(prefix: str, c: ContenderRow, path: str, sha: str) -> dict[str, Any]:
    s = c.settings
    return {
        f"{prefix}_contender": c.key, f"{prefix}_name": c.name, f"{prefix}_model": c.model,
        f"{prefix}_weights_hash": c.weights_hash, f"{prefix}_sampler": str(s.get("sampler", "")),
        f"{prefix}_steps": int(s.get("steps", 0)), f"{prefix}_guidance": float(s.get("guidance", 0.0)),
        f"{prefix}_image": path, f"{prefix}_image_sha256": sha,
    }
