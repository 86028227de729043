-- Durable timers of the scheduler (a projection of timer.set / timer.cancelled, plus firing)
CREATE TABLE IF NOT EXISTS timers (
    timer_id TEXT NOT NULL PRIMARY KEY,
    task_id TEXT,
    due_ms INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    target TEXT,
    payload TEXT,
    status TEXT NOT NULL,
    set_event_id TEXT,
    correlation_id TEXT,
    fired_ms INTEGER
);
CREATE INDEX IF NOT EXISTS timers_pending ON timers (status, due_ms);
