-- The signed terms of a consent, as the participant that took it signed them
-- (`renkei_crypto::consent_statement`). The hub keeps and relays them with each key-grant
-- request; the source verifies them itself before it seals a record key.
CREATE TABLE hub_consent_statements (
    consent_id   TEXT PRIMARY KEY,
    statement_id TEXT NOT NULL,              -- hex SHA-256 of the signed bytes
    statement    TEXT NOT NULL               -- the statement, JSON
);
