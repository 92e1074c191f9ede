-- Salted commitments in the audit chain: an entry about a resident is hashed over
-- commitments to its subject token and object (SHA-256 of this salt and the value)
-- instead of the values, so that a resident's proof file (which anyone holding the
-- consent's revocation code can fetch) carries neither the shared subject token nor
-- the hub's record id. NULL for entries written before: hashed over the values.
ALTER TABLE hub_audit ADD COLUMN salt TEXT;
