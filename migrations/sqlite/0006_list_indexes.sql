-- Combined filters of the sessions list (a staff member's sessions in one status, one
-- provider flow's sessions in one status) read one index range newest first instead of
-- walking every row of one filter to test the other: fast even when nothing matches.
CREATE INDEX kyc_sessions_creator_status ON kyc_sessions (created_by, status, id);
CREATE INDEX kyc_sessions_provider_status ON kyc_sessions (provider, flow, status, id);
