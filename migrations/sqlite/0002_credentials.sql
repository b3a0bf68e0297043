-- Provider credentials: versioned sets, secrets encrypted under a versioned master key.
CREATE TABLE master_keys (
    version INTEGER PRIMARY KEY,
    check_value TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    environment TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    settings TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    retired_at INTEGER,
    trial_links_used INTEGER NOT NULL DEFAULT 0,
    last_test_at INTEGER,
    last_test_ok INTEGER,
    last_test_message TEXT
);
CREATE UNIQUE INDEX credentials_one_active ON credentials (kind, environment) WHERE status = 'active';
CREATE UNIQUE INDEX credentials_version ON credentials (kind, environment, version);

-- ciphertext and nonce are base64 text; both are wiped (NULL) when the version is retired.
CREATE TABLE credential_secrets (
    credential_id INTEGER NOT NULL REFERENCES credentials (id),
    field TEXT NOT NULL,
    ciphertext TEXT,
    nonce TEXT,
    key_version INTEGER,
    last4 TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (credential_id, field)
);

INSERT INTO app_locks (name) VALUES ('credentials');
