-- The words each KYC session is found by (see `db::links::search_terms`): a search looks up
-- word prefixes in this index instead of scanning every session's text. Sessions written
-- before this migration are indexed by the app at its next start.
CREATE TABLE kyc_search_terms (
    term TEXT NOT NULL,
    session_id INTEGER NOT NULL REFERENCES kyc_sessions (id),
    PRIMARY KEY (term, session_id)
) WITHOUT ROWID;
CREATE INDEX kyc_search_terms_session ON kyc_search_terms (session_id, term);
