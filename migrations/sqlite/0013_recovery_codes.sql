-- Recovery codes: ten single-use codes per user with an authenticator, shown once when made.
-- Only a SHA-256 of each (bound to the user id) is kept. used_at is set when a code signs the
-- user in; reported_at when the user was told about that use at their next sign-in.
CREATE TABLE recovery_codes (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    reported_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
