"""The PostgreSQL store's schema: its versioned migrations, and the tables (with their
columns) a working copy takes into SQLite."""

from __future__ import annotations

__all__ = ["COPIED", "MIGRATIONS"]

# Applied in order at open; ``schema_migrations`` records each version applied.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    data TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    previous_status TEXT,
    closed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE revisions (
    incident_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    data TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (incident_id, revision)
);
CREATE TABLE threads (
    incident_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    last_revision INTEGER NOT NULL,
    last_kind TEXT NOT NULL,
    last_status TEXT NOT NULL,
    last_planned_at TIMESTAMPTZ NOT NULL,
    promised_at TIMESTAMPTZ,
    post_count INTEGER NOT NULL,
    reminder_count INTEGER NOT NULL,
    closed BOOLEAN NOT NULL,
    last_post_key TEXT,
    PRIMARY KEY (incident_id, channel)
);
CREATE TABLE posts (
    seq BIGSERIAL PRIMARY KEY,
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
    planned_at TIMESTAMPTZ NOT NULL,
    promised_at TIMESTAMPTZ,
    remote_id TEXT,
    remote_url TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TIMESTAMPTZ,
    sent_at TIMESTAMPTZ
);
CREATE INDEX posts_channel_state ON posts (channel, state, seq);
CREATE INDEX posts_thread ON posts (incident_id, channel, seq);
CREATE INDEX posts_text ON posts (channel, text_hash);
CREATE TABLE source_marks (
    source TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (source, incident_id)
);
CREATE TABLE channel_state (
    channel TEXT PRIMARY KEY,
    healthy BOOLEAN NOT NULL DEFAULT TRUE,
    paused_until TIMESTAMPTZ,
    last_error TEXT,
    replies_refused BOOLEAN NOT NULL DEFAULT FALSE,
    max_characters INTEGER,
    updated_at TIMESTAMPTZ
);
CREATE TABLE plan_lock (id INTEGER PRIMARY KEY);
INSERT INTO plan_lock VALUES (1);
CREATE TABLE leases (
    channel TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE instances (
    name TEXT PRIMARY KEY,
    alive_until TIMESTAMPTZ NOT NULL
);
""",
    # 2: when a thread's incident was reopened after its resolution (the cadence restarts).
    "ALTER TABLE threads ADD COLUMN reopened_at TIMESTAMPTZ",
)

COPIED: dict[str, tuple[str, ...]] = {
    "incidents": (
        "id",
        "revision",
        "fingerprint",
        "data",
        "first_seen_at",
        "changed_at",
        "previous_status",
        "closed",
    ),
    "revisions": ("incident_id", "revision", "data", "recorded_at"),
    "threads": (
        "incident_id",
        "channel",
        "last_revision",
        "last_kind",
        "last_status",
        "last_planned_at",
        "promised_at",
        "post_count",
        "reminder_count",
        "closed",
        "last_post_key",
        "reopened_at",
    ),
    "posts": (
        "seq",
        "key",
        "channel",
        "incident_id",
        "kind",
        "revision",
        "sequence",
        "part",
        "parts",
        "text",
        "text_hash",
        "length",
        "max_length",
        "language",
        "reply_to_key",
        "state",
        "planned_at",
        "promised_at",
        "remote_id",
        "remote_url",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
    ),
    "source_marks": ("source", "incident_id", "digest"),
    "channel_state": (
        "channel",
        "healthy",
        "paused_until",
        "last_error",
        "replies_refused",
        "max_characters",
        "updated_at",
    ),
}
