-- Hub tables. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are BIGINT microseconds since the Unix epoch (UTC); dates are TEXT YYYY-MM-DD.

CREATE TABLE hub_participants (
    participant   TEXT PRIMARY KEY,          -- `kind:id`
    kind          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    status        TEXT NOT NULL,             -- active | suspended
    grant_pk      TEXT,                      -- X25519 public key for key grants (base64)
    enrollment_pk TEXT,                      -- sources only: X25519 enrollment key (base64)
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- One row per chain (audit, records feed ...): appenders lock the row first, which
-- serializes them on both databases (row lock on PostgreSQL, write lock on SQLite).
CREATE TABLE hub_sequences (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    head  TEXT NOT NULL
);
INSERT INTO hub_sequences (name, value, head) VALUES ('audit', 0, '');
INSERT INTO hub_sequences (name, value, head) VALUES ('grants', 0, '');
INSERT INTO hub_sequences (name, value, head) VALUES ('events', 0, '');

CREATE TABLE hub_records (
    record_id      TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    subject_token  TEXT NOT NULL,
    category       TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    digest         TEXT NOT NULL,            -- SHA-256 of the sealed bytes (idempotency check)
    sealed         BYTEA NOT NULL,
    received_at    BIGINT NOT NULL
);
CREATE INDEX hub_records_subject ON hub_records (subject_token, category);

-- Residents linked to a recipient (by enrollment or counter consent): the pseudonym
-- that recipient knows them by.
CREATE TABLE hub_pseudonyms (
    recipient     TEXT NOT NULL,
    pseudonym     TEXT NOT NULL,
    subject_token TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (recipient, pseudonym)
);
CREATE INDEX hub_pseudonyms_subject ON hub_pseudonyms (subject_token, recipient);

CREATE TABLE hub_grant_requests (
    record_id   TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    source      TEXT NOT NULL,
    consent_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (record_id, recipient)
);
CREATE INDEX hub_grant_requests_source ON hub_grant_requests (source, created_at);
CREATE INDEX hub_grant_requests_consent ON hub_grant_requests (consent_id);

CREATE TABLE hub_key_grants (
    seq         BIGINT PRIMARY KEY,          -- feed cursor
    record_id   TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    consent_id  TEXT NOT NULL,
    grant_bytes BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX hub_key_grants_pair ON hub_key_grants (record_id, recipient);
CREATE INDEX hub_key_grants_feed ON hub_key_grants (recipient, seq);
CREATE INDEX hub_key_grants_consent ON hub_key_grants (consent_id);

CREATE TABLE hub_enrollments (
    id             TEXT PRIMARY KEY,
    requester      TEXT NOT NULL,            -- the PHR app `kind:id`
    source         TEXT NOT NULL,            -- the source whose enrollment key sealed it
    user_ref       TEXT NOT NULL,            -- the app's own reference for its user
    sealed         BYTEA NOT NULL,
    status         TEXT NOT NULL,            -- pending | linked | rejected | expired
    pseudonym      TEXT,
    reason         TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    resolved_at    BIGINT
);
CREATE INDEX hub_enrollments_source ON hub_enrollments (source, status, created_at);
CREATE INDEX hub_enrollments_requester ON hub_enrollments (requester, created_at);

CREATE TABLE hub_events (
    seq          BIGINT PRIMARY KEY,
    recipient    TEXT NOT NULL,
    kind         TEXT NOT NULL,              -- consent.revoked | consent.expired
    consent_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    acked_at     BIGINT,
    deleted      BOOLEAN,
    UNIQUE (recipient, kind, consent_id)
);
CREATE INDEX hub_events_pending ON hub_events (recipient, acked_at, seq);

CREATE TABLE hub_audit (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    subject   TEXT NOT NULL,                 -- subject token or ''
    consent   TEXT NOT NULL,                 -- consent id or ''
    category  TEXT NOT NULL,                 -- category or ''
    decision  TEXT NOT NULL,                 -- allow | deny
    reason    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX hub_audit_subject ON hub_audit (subject, seq);

CREATE TABLE hub_checkpoints (
    seq         BIGINT PRIMARY KEY,          -- the audit seq the checkpoint covers up to
    head_hash   TEXT NOT NULL,
    at          BIGINT NOT NULL,
    key_version TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL
);

CREATE TABLE hub_portal_attempts (
    client      TEXT PRIMARY KEY,            -- client address (hashed)
    failures    BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
