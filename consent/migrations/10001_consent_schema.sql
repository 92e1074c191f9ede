-- Consent ledger schema, shared by SQLite and PostgreSQL (portable types only).
-- Timestamps are BIGINT microseconds since the Unix epoch; dates are BIGINT days
-- from 0001-01-01 (chrono's num_days_from_ce). Both compare correctly on both engines.

-- Append-only, hash-chained: one row per consent version. seq is assigned by the
-- writer inside a serialized transaction (no SERIAL/AUTOINCREMENT).
CREATE TABLE consent_ledger (
    seq BIGINT PRIMARY KEY,
    consent_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    action TEXT NOT NULL,
    recipient TEXT NOT NULL,
    entry_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE UNIQUE INDEX consent_ledger_version ON consent_ledger (consent_id, version);
CREATE INDEX consent_ledger_recipient_seq ON consent_ledger (recipient, seq);

-- Projection of each consent's current version.
CREATE TABLE consents (
    id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    subject TEXT NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL,
    valid_from_us BIGINT NOT NULL,
    valid_until_us BIGINT,
    granted_at_us BIGINT NOT NULL,
    code_hash TEXT NOT NULL,
    code_used_at_us BIGINT,
    consent_json TEXT NOT NULL,
    last_seq BIGINT NOT NULL
);
CREATE INDEX consents_subject ON consents (subject, granted_at_us);
CREATE UNIQUE INDEX consents_code_hash ON consents (code_hash);

-- One row per (consent, category), denormalized so that the coverage check is one
-- index range scan on (subject, recipient, category, status).
CREATE TABLE consent_categories (
    consent_id TEXT NOT NULL REFERENCES consents (id),
    category TEXT NOT NULL,
    subject TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    valid_from_us BIGINT NOT NULL,
    valid_until_us BIGINT,
    data_from_day BIGINT,
    data_until_day BIGINT,
    PRIMARY KEY (consent_id, category)
);
CREATE INDEX consent_categories_cover ON consent_categories (subject, recipient, category, status);
