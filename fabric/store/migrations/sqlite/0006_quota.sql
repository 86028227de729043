-- Daily API quota per (platform, account, platform-local day, bucket), written by
-- fabric.quota.QuotaTracker with one upsert per call (``used = used + ?``), so several
-- publisher processes can share it. Not a projection: it counts calls made to the outside.
CREATE TABLE IF NOT EXISTS quota_usage (
    platform TEXT NOT NULL,
    account TEXT NOT NULL,
    day TEXT NOT NULL,
    bucket TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT,
    PRIMARY KEY (platform, account, day, bucket)
);
