-- Consumer runtime: inbox (idempotency), outbox (events emitted with a state change), kv (state)
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT NOT NULL PRIMARY KEY,
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    msg_key TEXT,
    part INTEGER,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_consumer ON outbox (consumer);
CREATE TABLE IF NOT EXISTS kv (
    consumer TEXT NOT NULL,
    k TEXT NOT NULL,
    v BLOB NOT NULL,
    PRIMARY KEY (consumer, k)
) WITHOUT ROWID;
