-- One row per voice-processed task (projection of voice.assembled): the seed's metrics
-- "processing time per audio minute" and "parallel speedup" come from here.
CREATE TABLE IF NOT EXISTS voice_runs (
    task_id TEXT NOT NULL PRIMARY KEY,
    engine TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    engine_seconds REAL NOT NULL,
    wall_seconds REAL NOT NULL,
    separation TEXT,
    created_at TEXT
);
