-- Token key rotation at a source (docs/operations.md, "Agent tokenization key K_tok"):
-- a source's agent reports that its new token and an older token name the same
-- resident. The hub keeps the resident's history under the canonical (first) token
-- and resolves the new one to it whenever that same source names it (records,
-- counter consents, enrollment answers), so consents, enrollments and the `rp1_`
-- pseudonyms derived from the canonical token carry on. Nothing stored is re-keyed.
CREATE TABLE hub_subject_links (
    new_token       TEXT PRIMARY KEY,        -- the token the source names now (`st1_…`)
    canonical_token TEXT NOT NULL,           -- the token the history is stored under
    source          TEXT NOT NULL,           -- the source that linked them; only its names resolve
    linked_at       BIGINT NOT NULL
);
CREATE INDEX hub_subject_links_canonical ON hub_subject_links (canonical_token, source);
