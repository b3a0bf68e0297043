-- Passkeys (WebAuthn credentials), several per user, each with a name the user gave it. The
-- credential (public key, counter, flags) is kept as webauthn-rs serialises it; nothing in it
-- is secret. credential_id (base64url) is unique across users.
CREATE TABLE passkeys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    credential TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);
