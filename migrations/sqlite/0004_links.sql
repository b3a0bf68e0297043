-- KYC sessions, their timelines and deliveries. A session row is written ('creating')
-- before the provider is called, so a crash or timeout never loses that a call was made.
CREATE TABLE kyc_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL CHECK (provider IN ('message_central', 'eko')),
    flow TEXT NOT NULL CHECK (flow IN ('basic', 'premium', 'digilocker')),
    environment TEXT NOT NULL,
    credential_id INTEGER NOT NULL REFERENCES credentials (id),
    sandbox INTEGER NOT NULL DEFAULT 0,
    customer_name TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT,
    internal_ref TEXT,
    documents TEXT NOT NULL DEFAULT '',
    consent_note TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('creating', 'created', 'sent', 'returned', 'completed', 'failed', 'expired', 'cancelled', 'superseded')),
    link_url TEXT,
    expires_at INTEGER,
    provider_token TEXT,
    journey_id TEXT,
    reference_id TEXT,
    client_ref_id TEXT,
    verification_id TEXT,
    result TEXT,
    last_error TEXT,
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ended_at INTEGER,
    supersedes INTEGER REFERENCES kyc_sessions (id),
    superseded_by INTEGER REFERENCES kyc_sessions (id),
    next_poll_at INTEGER,
    poll_count INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    search_text TEXT NOT NULL DEFAULT ''
);
CREATE INDEX kyc_sessions_status ON kyc_sessions (status, id);
CREATE INDEX kyc_sessions_creator ON kyc_sessions (created_by, id);
CREATE INDEX kyc_sessions_provider ON kyc_sessions (provider, flow, id);
CREATE INDEX kyc_sessions_created ON kyc_sessions (created_at, id);
CREATE INDEX kyc_sessions_poll ON kyc_sessions (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX kyc_sessions_open_expiry ON kyc_sessions (expires_at) WHERE status IN ('created', 'sent', 'returned');
CREATE INDEX kyc_sessions_creating ON kyc_sessions (created_at) WHERE status = 'creating';
CREATE INDEX kyc_sessions_journey ON kyc_sessions (journey_id);
CREATE INDEX kyc_sessions_reference ON kyc_sessions (reference_id);
CREATE INDEX kyc_sessions_phone ON kyc_sessions (phone);

CREATE TABLE kyc_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES kyc_sessions (id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX kyc_events_session ON kyc_events (session_id, id);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES kyc_sessions (id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    destination_masked TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sending', 'sent', 'failed')),
    provider_message_id TEXT,
    error TEXT,
    attempted_by INTEGER REFERENCES users (id),
    attempted_at INTEGER NOT NULL
);
CREATE INDEX deliveries_session ON deliveries (session_id, id);

-- Admin-editable message templates (the email that carries a link).
CREATE TABLE message_templates (
    name TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO message_templates (name, subject, body, updated_by, updated_at) VALUES (
    'link_email',
    'Complete your identity verification for {company}',
    'Dear {name},

{company} asks you to verify your identity online. It takes a few minutes:

{link}

The link works once and is valid until {expires}. If you did not expect this message, ignore it.',
    'system',
    0
);
