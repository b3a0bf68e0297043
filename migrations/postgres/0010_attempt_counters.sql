-- Sign-in attempts are counted before the password is checked, in one statement that also
-- decides whether the attempt may go on; this column holds that decision (1 = let through,
-- 0 = refused by a running lock), so the statement's RETURNING can report it exactly even
-- when many attempts arrive in the same second.
ALTER TABLE sign_in_throttle ADD COLUMN admitted BIGINT NOT NULL DEFAULT 1;
