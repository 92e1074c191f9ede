-- The audit log as a transparency log (docs/transparency-log.md).
--
-- A Merkle tree over the audit entries, RFC 6962 hashing: leaf i is the entry with
-- seq i + 1, its leaf data that entry's 32-byte chain hash (`hub_audit.hash`). Every
-- leaf and completed interior node is stored under its index in Go's tlog storage
-- order (tlog_tiles::stored_hash_index), written in the transaction of its entries.
-- Tiles and proofs are read from here. Entries from before this migration are added
-- at start-up (audit::tree::backfill).
CREATE TABLE hub_log_hashes (
    idx  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Each checkpoint also as a C2SP signed note (origin, size, base64 root, signature);
-- '' for checkpoints signed before this migration.
ALTER TABLE hub_checkpoints ADD COLUMN note TEXT NOT NULL DEFAULT '';

-- Witnesses (participants) and the cosignature key each first cosigned with.
CREATE TABLE hub_log_witnesses (
    witness    TEXT PRIMARY KEY,             -- `kind:id` from its certificate
    vkey       TEXT NOT NULL,                -- C2SP verifier key, type 0x04 (cosignature/v1)
    first_seen BIGINT NOT NULL
);

-- Cosignatures the witnesses returned: one per witness and checkpoint.
CREATE TABLE hub_log_cosignatures (
    seq         BIGINT NOT NULL,             -- the checkpoint (tree size)
    witness     TEXT NOT NULL,
    line        TEXT NOT NULL,               -- the signature line, `— name base64`
    cosigned_at BIGINT NOT NULL,             -- the time it names (seconds since the epoch)
    received_at BIGINT NOT NULL,
    PRIMARY KEY (seq, witness)
);
CREATE INDEX hub_log_cosignatures_witness ON hub_log_cosignatures (witness, seq);
