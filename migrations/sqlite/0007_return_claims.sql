-- A customer's return is a claim, not a verdict: what their browser reported (the sanitised
-- `status` it carried), how often it came back and when last, kept on the session so the list
-- and the detail can show it. A Message Central verdict is recorded by a named staff member
-- after checking the provider's console: who, when and their note.
ALTER TABLE kyc_sessions ADD COLUMN return_claim TEXT;
ALTER TABLE kyc_sessions ADD COLUMN return_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN last_return_at INTEGER;
ALTER TABLE kyc_sessions ADD COLUMN outcome_by TEXT;
ALTER TABLE kyc_sessions ADD COLUMN outcome_at INTEGER;
ALTER TABLE kyc_sessions ADD COLUMN outcome_note TEXT;
-- An anonymous return carrying `token=` finds its session by this index instead of reading
-- the whole table.
CREATE INDEX kyc_sessions_provider_token ON kyc_sessions (provider_token);
