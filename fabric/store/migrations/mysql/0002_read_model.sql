-- Read model: projections of the log (rebuilt by `fabric replay`). Times are UTC, from event
-- times (never the wall clock), so a replay produces the same rows.
CREATE TABLE IF NOT EXISTS tasks (
    id VARCHAR(64) NOT NULL DEFAULT (uuid()) PRIMARY KEY,
    account_name VARCHAR(255),
    platform VARCHAR(32) NOT NULL DEFAULT 'youtube',
    targets TEXT,
    video_path TEXT,
    title VARCHAR(2200),
    description TEXT,
    keywords TEXT,
    privacy VARCHAR(16),
    scheduled_time DATETIME(3),
    status ENUM('pending', 'processing', 'completed', 'failed') NOT NULL DEFAULT 'pending',
    state VARCHAR(32),
    retry_count INT NOT NULL DEFAULT 0,
    error TEXT,
    error_code VARCHAR(64),
    options TEXT,
    created_at DATETIME(3),
    updated_at DATETIME(3),
    completed_at DATETIME(3),
    KEY tasks_status (status),
    KEY tasks_account (account_name),
    KEY tasks_unclaimed (state, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS uploads (
    upload_id VARCHAR(64) NOT NULL PRIMARY KEY,
    task_id VARCHAR(64) NOT NULL,
    platform VARCHAR(32) NOT NULL,
    account_name VARCHAR(255) NOT NULL,
    video_id VARCHAR(255),
    video_url TEXT,
    platform_upload_id VARCHAR(1024),
    status VARCHAR(16) NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    bytes_sent BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    error_class VARCHAR(16),
    deferred_until DATETIME(3),
    started_at DATETIME(3),
    published_at DATETIME(3),
    updated_at DATETIME(3),
    KEY uploads_task (task_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS post_interactions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    upload_id VARCHAR(64) NOT NULL,
    task_id VARCHAR(64) NOT NULL,
    platform VARCHAR(32) NOT NULL,
    account_name VARCHAR(255) NOT NULL,
    video_id VARCHAR(255),
    interaction_type ENUM('comment', 'like') NOT NULL,
    content TEXT,
    external_id VARCHAR(255),
    status VARCHAR(16) NOT NULL,
    error TEXT,
    created_at DATETIME(3),
    updated_at DATETIME(3),
    KEY post_interactions_upload (upload_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS projector_offsets (
    topic VARCHAR(255) NOT NULL,
    part INT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, part)
) ENGINE=InnoDB;
