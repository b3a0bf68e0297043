-- The tamper-evident audit log: one row per recorded staff or system action, chained by
-- HMAC (mac = HMAC(audit key, prev_mac || canonical row)). The database refuses to change
-- or remove rows; seq is assigned by the application under the 'audit' lock, without gaps.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor_id BIGINT,
    actor_email TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    ip TEXT NOT NULL,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied', 'error')),
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_mac TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor_email, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, seq);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: rows cannot be changed or deleted';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The audit MAC key, derived from the first master key and kept sealed (AES-256-GCM) under
-- the current one, so master-key rotation does not change the key old rows verify with.
CREATE TABLE audit_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

INSERT INTO app_locks (name) VALUES ('audit');
