-- One row per voice-processed task (projection of voice.assembled): the seed's metrics
-- "processing time per audio minute" and "parallel speedup" come from here.
CREATE TABLE IF NOT EXISTS voice_runs (
    task_id VARCHAR(64) NOT NULL PRIMARY KEY,
    engine VARCHAR(32) NOT NULL,
    chunks INT NOT NULL,
    audio_seconds DOUBLE NOT NULL,
    engine_seconds DOUBLE NOT NULL,
    wall_seconds DOUBLE NOT NULL,
    separation TEXT,
    created_at DATETIME(3)
) ENGINE=InnoDB;
