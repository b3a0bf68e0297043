-- The words each KYC session is found by (see `db::links::search_terms`): a search looks up
-- word prefixes in this index instead of scanning every session's text. Sessions written
-- before this migration are indexed by the app at its next start. Byte order ("C") makes a
-- prefix an index range whatever the database's collation.
CREATE TABLE kyc_search_terms (
    term TEXT COLLATE "C" NOT NULL,
    session_id BIGINT NOT NULL REFERENCES kyc_sessions (id),
    PRIMARY KEY (term, session_id)
);
CREATE INDEX kyc_search_terms_session ON kyc_search_terms (session_id, term);
