-- A key-grant request the source did not answer (it refused it, or it was lost on the
-- way) waits before it is served again, longer each time: unanswerable requests no
-- longer sit at the head of the queue, in front of every request behind them.
-- `served`: how many times it was served; `due_at`: when it may be served next (µs).
ALTER TABLE hub_grant_requests ADD COLUMN served BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hub_grant_requests ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;
