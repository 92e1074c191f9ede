-- Research studies an ethics committee approved (`internet-hub studies add`): a `research`
-- consent names one as its evidence (`study:<id>`) and must fall within its period; each
-- study has one recipient, the research institution's analyst participant.
CREATE TABLE hub_studies (
    study_id    TEXT PRIMARY KEY,
    recipient   TEXT NOT NULL,
    committee   TEXT NOT NULL,
    approval_id TEXT NOT NULL,
    starts_on   TEXT NOT NULL,
    ends_on     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
