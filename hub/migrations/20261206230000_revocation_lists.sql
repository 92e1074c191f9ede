-- Each participant's newest signed revocation list (`renkei_crypto::consent_statement::
-- RevocationList`): the ids of every consent statement it revoked. The hub keeps and
-- relays it; sources verify it themselves before releasing under that participant's
-- statements.
CREATE TABLE hub_revocation_lists (
    signer    TEXT PRIMARY KEY,
    issued_at TEXT NOT NULL,   -- RFC 3339, microseconds, UTC (as signed)
    list      TEXT NOT NULL    -- the list, JSON
);
