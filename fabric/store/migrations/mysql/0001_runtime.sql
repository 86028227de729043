-- Consumer runtime: inbox (idempotency), outbox (events emitted with a state change), kv (state)
CREATE TABLE IF NOT EXISTS inbox (
    consumer VARCHAR(64) NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (consumer, event_id)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS outbox (
    event_id VARCHAR(64) NOT NULL PRIMARY KEY,
    consumer VARCHAR(64) NOT NULL,
    topic VARCHAR(255) NOT NULL,
    msg_key VARCHAR(255),
    part INT,
    value LONGBLOB NOT NULL,
    KEY outbox_consumer (consumer)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS kv (
    consumer VARCHAR(64) NOT NULL,
    k VARCHAR(255) NOT NULL,
    v LONGBLOB NOT NULL,
    PRIMARY KEY (consumer, k)
) ENGINE=InnoDB;
