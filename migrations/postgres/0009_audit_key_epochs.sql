-- Audit key epochs: a random MAC key per epoch, a new epoch on master-key rotation and on
-- `rotate-audit-key`, so a leaked old master key (with an old backup) cannot sign new rows.
-- Every epoch's key stays sealed (AES-256-GCM) under the current master key for verification;
-- the seal binds the epoch and the first seq it signs, so neither can be changed unnoticed.
CREATE TABLE audit_key_epochs (
    epoch BIGINT PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The one key so far becomes epoch 1, signing from seq 1.
INSERT INTO audit_key_epochs (epoch, first_seq, ciphertext, nonce, key_version, created_at)
SELECT 1, 1, ciphertext, nonce, key_version, created_at FROM audit_key WHERE id = 1;
DROP TABLE audit_key;

-- The epoch whose key signed the row (rows before epochs existed were signed in epoch 1).
-- ADD COLUMN with a constant default rewrites no rows and fires no row trigger.
ALTER TABLE audit_log ADD COLUMN key_epoch BIGINT NOT NULL DEFAULT 1;
