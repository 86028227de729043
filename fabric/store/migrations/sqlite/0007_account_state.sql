-- Operational state of accounts (fabric.store.account_state), beside the account store.
-- account_pauses: accounts that need reconnecting (account.reauth_required). Uploads to them
-- are deferred, not attempted, until the account's token changes (token_issued_at differs:
-- `account add --replace` or a successful refresh), which lifts the pause.
CREATE TABLE IF NOT EXISTS account_pauses (
    platform TEXT NOT NULL,
    account TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    token_issued_at TEXT NOT NULL DEFAULT '',
    paused_at TEXT NOT NULL,
    PRIMARY KEY (platform, account)
);
-- refresh_leases: one token refresh at a time per account across refresher processes
-- (TikTok rotates refresh tokens: two concurrent refreshes would kill each other's token).
CREATE TABLE IF NOT EXISTS refresh_leases (
    platform TEXT NOT NULL,
    account TEXT NOT NULL,
    owner TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (platform, account)
);
