-- Daily API quota per (platform, account, platform-local day, bucket), written by
-- fabric.quota.QuotaTracker with one upsert per call (``used = used + VALUES(used)``), so
-- several publisher processes can share it. Not a projection: it counts outside calls.
CREATE TABLE IF NOT EXISTS quota_usage (
    platform VARCHAR(32) NOT NULL,
    account VARCHAR(255) NOT NULL,
    day VARCHAR(10) NOT NULL,
    bucket VARCHAR(32) NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    calls BIGINT NOT NULL DEFAULT 0,
    updated_at VARCHAR(40),
    PRIMARY KEY (platform, account, day, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
