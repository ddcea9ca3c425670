"""The arena's SQLite schema: an append-only list of migrations (opening an older file upgrades it in place)."""

from __future__ import annotations

# Append only: migration i (0-based) upgrades a file from version i to version i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL                      -- JSON
    );
    CREATE TABLE prompts (
        id   INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE
    );
    CREATE TABLE contenders (
        id           INTEGER PRIMARY KEY,
        key          TEXT NOT NULL UNIQUE,       -- sha256 of weights hash + settings (16 hex)
        weights_hash TEXT NOT NULL,
        model        TEXT NOT NULL,              -- folder or preset name as given
        settings     TEXT NOT NULL,              -- JSON {sampler, steps, guidance}
        name         TEXT NOT NULL UNIQUE        -- display name, revealed after a vote
    );
    CREATE TABLE images (
        id           INTEGER PRIMARY KEY,
        contender_id INTEGER NOT NULL REFERENCES contenders(id),
        prompt_id    INTEGER NOT NULL REFERENCES prompts(id),
        seed         INTEGER NOT NULL,
        path         TEXT NOT NULL,              -- relative to the campaign directory
        sha256       TEXT NOT NULL,
        created_at   REAL NOT NULL,
        UNIQUE (contender_id, prompt_id, seed)
    );
    CREATE TABLE battles (
        id          INTEGER PRIMARY KEY,
        prompt_id   INTEGER NOT NULL REFERENCES prompts(id),
        seed        INTEGER NOT NULL,
        contender_a INTEGER NOT NULL REFERENCES contenders(id),
        contender_b INTEGER NOT NULL REFERENCES contenders(id),
        image_a     INTEGER NOT NULL REFERENCES images(id),
        image_b     INTEGER NOT NULL REFERENCES images(id),
        created_at  REAL NOT NULL,
        CHECK (contender_a < contender_b),
        UNIQUE (prompt_id, seed, contender_a, contender_b)
    );
    CREATE TABLE raters (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE TABLE impressions (
        id              INTEGER PRIMARY KEY,
        token           TEXT NOT NULL UNIQUE,
        rater_id        INTEGER NOT NULL REFERENCES raters(id),
        battle_id       INTEGER NOT NULL REFERENCES battles(id),
        left_contender  INTEGER NOT NULL REFERENCES contenders(id),
        right_contender INTEGER NOT NULL REFERENCES contenders(id),
        served_at       REAL NOT NULL,
        shown_at        REAL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'voted', 'skipped')),
        UNIQUE (rater_id, battle_id)
    );
    CREATE INDEX impressions_battle ON impressions (battle_id, status);
    CREATE TABLE votes (
        id              INTEGER PRIMARY KEY,
        impression_id   INTEGER NOT NULL UNIQUE REFERENCES impressions(id),
        rater_id        INTEGER NOT NULL REFERENCES raters(id),
        battle_id       INTEGER NOT NULL REFERENCES battles(id),
        choice          TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
        left_contender  INTEGER NOT NULL REFERENCES contenders(id),
        right_contender INTEGER NOT NULL REFERENCES contenders(id),
        shown_at        REAL NOT NULL,
        voted_at        REAL NOT NULL,
        app_version     TEXT NOT NULL,
        UNIQUE (rater_id, battle_id)
    );
    CREATE INDEX votes_battle ON votes (battle_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
