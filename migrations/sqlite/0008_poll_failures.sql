-- Eko polls that keep failing, and results kept from the status call alone.
-- poll_failing_since: when the current run of failed polls began (NULL while polls work);
-- poll_failures: how many polls in a row failed; result_partial: 1 when `result` holds only
-- the status call's masked details because no document could be fetched.
ALTER TABLE kyc_sessions ADD COLUMN poll_failing_since INTEGER;
ALTER TABLE kyc_sessions ADD COLUMN poll_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kyc_sessions ADD COLUMN result_partial INTEGER NOT NULL DEFAULT 0;
CREATE INDEX kyc_sessions_poll_failing ON kyc_sessions (poll_failing_since) WHERE poll_failing_since IS NOT NULL;
