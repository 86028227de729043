-- Operational state of accounts (fabric.store.account_state), beside the account store.
-- account_pauses: accounts that need reconnecting (account.reauth_required). Uploads to them
-- are deferred, not attempted, until the account's token changes (token_issued_at differs:
-- `account add --replace` or a successful refresh), which lifts the pause.
CREATE TABLE IF NOT EXISTS account_pauses (
    platform VARCHAR(32) NOT NULL,
    account VARCHAR(255) NOT NULL,
    code VARCHAR(128) NOT NULL,
    message TEXT NOT NULL,
    token_issued_at VARCHAR(40) NOT NULL DEFAULT '',
    paused_at VARCHAR(40) NOT NULL,
    PRIMARY KEY (platform, account)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- refresh_leases: one token refresh at a time per account across refresher processes
-- (TikTok rotates refresh tokens: two concurrent refreshes would kill each other's token).
CREATE TABLE IF NOT EXISTS refresh_leases (
    platform VARCHAR(32) NOT NULL,
    account VARCHAR(255) NOT NULL,
    owner VARCHAR(255) NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (platform, account)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
