-- Who may act for whom (docs/authorization.md).
--
-- A subject token is owned by the source whose agent introduced it (upload, counter
-- consent, enrollment answer). Only that source uploads, grants at the counter,
-- answers enrollments, links tokens and revokes as counter staff for that resident.
CREATE TABLE hub_subjects (
    subject_token TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,             -- `source:<id>`
    created_at    BIGINT NOT NULL
);
INSERT INTO hub_subjects (subject_token, owner, created_at)
    SELECT subject_token, MIN(source), MIN(received_at) FROM hub_records GROUP BY subject_token;

-- Residents who linked an app by enrollment: that app acts for them (grants and
-- revokes their consents, publishes their own records). Being a recipient of a
-- consent never makes a link.
CREATE TABLE hub_enrollment_links (
    app           TEXT NOT NULL,             -- `phr:<id>`
    subject_token TEXT NOT NULL,
    source        TEXT NOT NULL,             -- the source that answered the enrollment
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (app, subject_token)
);
INSERT INTO hub_enrollment_links (app, subject_token, source, created_at)
    SELECT e.requester, p.subject_token, MIN(e.source), MIN(e.created_at)
    FROM hub_enrollments e
    JOIN hub_pseudonyms p ON p.recipient = e.requester AND p.pseudonym = e.pseudonym
    WHERE e.status = 'linked'
    GROUP BY e.requester, p.subject_token;

-- Records a recipient reported it could not open (its key grant or the sealed bytes
-- failed). Counted per source for metrics and shown to the source's agent.
CREATE TABLE hub_unreadable (
    record_id   TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,               -- bounded, escaped (at most 200 characters)
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (record_id, recipient)
);
CREATE INDEX hub_unreadable_source ON hub_unreadable (source, reported_at);

-- Each recipient receives its own copy of a record, sealed by the source when it
-- answers the key grant, under its own record id (`alias`): recipients of the same
-- record share no identifier. Grants stored before this change keep the shared copy.
ALTER TABLE hub_key_grants ADD COLUMN alias TEXT;
ALTER TABLE hub_key_grants ADD COLUMN sealed BYTEA;
UPDATE hub_key_grants SET alias = record_id;
CREATE UNIQUE INDEX hub_key_grants_alias ON hub_key_grants (recipient, alias);

-- The participant's own signed key statement (JSON, crypto/src/statement.rs): sources and
-- apps seal only to keys a statement signed with the participant's certificate key binds.
ALTER TABLE hub_participants ADD COLUMN key_statement TEXT;
