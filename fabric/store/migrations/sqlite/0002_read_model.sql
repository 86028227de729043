-- Read model: projections of the log (rebuilt by `fabric replay`). Times are UTC,
-- 'YYYY-MM-DD HH:MM:SS.fff', taken from event times (never the wall clock), so a replay
-- produces the same rows.
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    account_name TEXT,
    platform TEXT NOT NULL DEFAULT 'youtube',
    targets TEXT,
    video_path TEXT,
    title TEXT,
    description TEXT,
    keywords TEXT,
    privacy TEXT,
    scheduled_time TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    state TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_code TEXT,
    options TEXT,
    created_at TEXT,
    updated_at TEXT,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_account ON tasks (account_name);
CREATE INDEX IF NOT EXISTS tasks_unclaimed ON tasks (state, status);

CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT NOT NULL PRIMARY KEY,
    task_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    account_name TEXT NOT NULL,
    video_id TEXT,
    video_url TEXT,
    platform_upload_id TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_class TEXT,
    deferred_until TEXT,
    started_at TEXT,
    published_at TEXT,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS uploads_task ON uploads (task_id);

CREATE TABLE IF NOT EXISTS post_interactions (
    id TEXT NOT NULL PRIMARY KEY,
    upload_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    account_name TEXT NOT NULL,
    video_id TEXT,
    interaction_type TEXT NOT NULL CHECK (interaction_type IN ('comment', 'like')),
    content TEXT,
    external_id TEXT,
    status TEXT NOT NULL,
    error TEXT,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS post_interactions_upload ON post_interactions (upload_id);

-- where the projector is in the log, written in the same transaction as its rows
CREATE TABLE IF NOT EXISTS projector_offsets (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
