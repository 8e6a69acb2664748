"""The SQLite store's schema and its versioned migrations (``PRAGMA user_version``)."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    data TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    previous_status TEXT,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revisions (
    incident_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (incident_id, revision)
);
CREATE TABLE IF NOT EXISTS threads (
    incident_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    last_revision INTEGER NOT NULL,
    last_kind TEXT NOT NULL,
    last_status TEXT NOT NULL,
    last_planned_at TEXT NOT NULL,
    promised_at TEXT,
    post_count INTEGER NOT NULL,
    reminder_count INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    last_post_key TEXT,
    PRIMARY KEY (incident_id, channel)
);
CREATE TABLE IF NOT EXISTS posts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    revision INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    length INTEGER NOT NULL,
    max_length INTEGER NOT NULL,
    language TEXT NOT NULL,
    reply_to_key TEXT,
    state TEXT NOT NULL,
    planned_at TEXT NOT NULL,
    promised_at TEXT,
    remote_id TEXT,
    remote_url TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS posts_channel_state ON posts (channel, state, seq);
CREATE INDEX IF NOT EXISTS posts_thread ON posts (incident_id, channel, seq);
CREATE INDEX IF NOT EXISTS posts_text ON posts (channel, text_hash);
CREATE TABLE IF NOT EXISTS source_marks (
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (source, incident_id)
);
CREATE TABLE IF NOT EXISTS channel_state (
    channel TEXT PRIMARY KEY,
    healthy INTEGER NOT NULL DEFAULT 1,
    paused_until TEXT,
    last_error TEXT,
    replies_refused INTEGER NOT NULL DEFAULT 0,
    max_characters INTEGER,
    updated_at TEXT
);
"""

# Versioned schema changes, applied in order at open (``PRAGMA user_version`` counts them).
# Version 1 is the schema as it was before versions were kept: IF NOT EXISTS throughout, so
# a store made then is recognised as version 1.
MIGRATIONS: tuple[str, ...] = (
    SCHEMA,
    # 2: when a thread's incident was reopened after its resolution (the cadence restarts).
    "ALTER TABLE threads ADD COLUMN reopened_at TEXT",
    # 3: unsent posts found without reading every post (``stale_posts`` at every plan).
    "CREATE INDEX IF NOT EXISTS posts_state ON posts (state, seq)",
)
