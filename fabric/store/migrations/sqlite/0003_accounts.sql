-- Accounts: written by the account store (not projections: they hold encrypted secrets,
-- which never travel in events). Secrets are AES-GCM ciphertexts ('v1:...').
CREATE TABLE IF NOT EXISTS youtube_channels (
    name TEXT NOT NULL PRIMARY KEY,
    channel_id TEXT,
    client_id TEXT,
    client_secret TEXT,
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at TEXT,
    token_issued_at TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TEXT,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS accounts (
    platform TEXT NOT NULL,
    name TEXT NOT NULL,
    external_id TEXT,
    client_id TEXT,
    client_secret TEXT,
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at TEXT,
    token_issued_at TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TEXT,
    updated_at TEXT,
    PRIMARY KEY (platform, name)
);
-- Persisted intents of outside side effects (upload sessions, containers, comments)
CREATE TABLE IF NOT EXISTS intents (
    k TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT
);
