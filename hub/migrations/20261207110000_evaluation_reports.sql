-- Evaluation reports (issue 19): a source's signed programme statistics, sealed to the
-- evaluator (an analyst) named in the programme. They hold no individual data, so they
-- travel under no resident's consent; the hub keeps only the sealed bytes.
CREATE TABLE hub_evaluation_reports (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX hub_evaluation_reports_recipient ON hub_evaluation_reports (recipient, created_at);
