-- Authenticator (TOTP) factors, one per user. The seed is sealed by the vault (base64
-- ciphertext and nonce, bound to the user id). confirmed_at stays NULL until the first code
-- confirms the enrolment; last_step is the last time step whose code was accepted, so the
-- same code is never accepted twice.
CREATE TABLE second_factors (
    user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
