-- Sign-in sessions are now stored under the SHA-256 of their id, not the id itself. Rows
-- written before hold plain ids that would still work as cookies for whoever reads them: they
-- are removed, which signs everyone out once.
DELETE FROM auth_sessions;
