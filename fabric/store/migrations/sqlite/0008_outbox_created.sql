-- When an outbox row was committed (ms since the epoch; 0 for rows older than this column).
-- The sweep that publishes a dead member's leftovers takes only rows older than a grace
-- period: a live member publishes its own rows within milliseconds of the commit, and a
-- sweep that took them too would publish them early, ahead of events the member appends
-- first (a publisher's publish.started before its publish.completed).
ALTER TABLE outbox ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
