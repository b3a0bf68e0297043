-- Single sign-on (OpenID Connect). A user may be marked SSO-only: signing in with a password is
-- refused for them (their stored hash is never checked). An identity links a user to one
-- subject at one issuer; the first sign-on links by verified email, later ones by subject.
ALTER TABLE users ADD COLUMN sso_only INTEGER NOT NULL DEFAULT 0;
CREATE TABLE user_identities (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    UNIQUE (issuer, subject),
    UNIQUE (user_id, issuer)
);
