-- Durable timers of the scheduler (a projection of timer.set / timer.cancelled, plus firing)
CREATE TABLE IF NOT EXISTS timers (
    timer_id VARCHAR(255) NOT NULL PRIMARY KEY,
    task_id VARCHAR(64),
    due_ms BIGINT NOT NULL,
    purpose VARCHAR(32) NOT NULL,
    target TEXT,
    payload TEXT,
    status VARCHAR(16) NOT NULL,
    set_event_id VARCHAR(64),
    correlation_id VARCHAR(64),
    fired_ms BIGINT,
    KEY timers_pending (status, due_ms)
) ENGINE=InnoDB;
