-- Portal failures count within the lockout window; rows older than it (and not locked)
-- are deleted on the next failure, found through this index.
CREATE INDEX hub_portal_attempts_updated ON hub_portal_attempts (updated_at);
