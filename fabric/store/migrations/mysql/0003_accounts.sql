-- Accounts: written by the account store (not projections: they hold encrypted secrets,
-- which never travel in events). Secrets are AES-GCM ciphertexts ('v1:...').
CREATE TABLE IF NOT EXISTS youtube_channels (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    channel_id VARCHAR(255),
    client_id VARCHAR(512),
    client_secret TEXT,
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at VARCHAR(40),
    token_issued_at VARCHAR(40),
    enabled TINYINT NOT NULL DEFAULT 1,
    settings TEXT NOT NULL,
    created_at VARCHAR(40),
    updated_at VARCHAR(40)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS accounts (
    platform VARCHAR(32) NOT NULL,
    name VARCHAR(255) NOT NULL,
    external_id VARCHAR(255),
    client_id VARCHAR(512),
    client_secret TEXT,
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at VARCHAR(40),
    token_issued_at VARCHAR(40),
    enabled TINYINT NOT NULL DEFAULT 1,
    settings TEXT NOT NULL,
    created_at VARCHAR(40),
    updated_at VARCHAR(40),
    PRIMARY KEY (platform, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS intents (
    k VARCHAR(255) NOT NULL PRIMARY KEY,
    state LONGTEXT NOT NULL,
    updated_at VARCHAR(40)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
