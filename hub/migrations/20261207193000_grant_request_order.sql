-- Requests never served come first, then those served fewest times: a backlog the
-- source keeps refusing does not delay new requests when it comes due again.
CREATE INDEX hub_grant_requests_served ON hub_grant_requests (source, served, created_at);
