-- The audit chain's head in one row: the newest row's seq and MAC (NULL before the first row)
-- and the newest key epoch, kept by triggers as rows and epochs are added. An append takes
-- the chain lock and learns where the chain goes on in one statement (an `UPDATE … RETURNING`
-- of this row), where it took three (the 'audit' lock, the head, the newest epoch). The row is
-- a copy for appends only: audit_log stays the record, and verification reads audit_log.
-- Rows removed behind the log's back leave the head where it was, so the next append shows
-- the gap instead of closing it.
CREATE TABLE audit_chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    mac TEXT,
    newest_epoch INTEGER
);
INSERT INTO audit_chain_head (id, seq, mac, newest_epoch) VALUES (
    1,
    COALESCE((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0),
    (SELECT mac FROM audit_log ORDER BY seq DESC LIMIT 1),
    (SELECT MAX(epoch) FROM audit_key_epochs)
);

CREATE TRIGGER audit_chain_head_follows_log AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_chain_head SET seq = NEW.seq, mac = NEW.mac WHERE id = 1 AND NEW.seq > seq;
END;
CREATE TRIGGER audit_chain_head_follows_epochs AFTER INSERT ON audit_key_epochs
BEGIN
    UPDATE audit_chain_head SET newest_epoch = NEW.epoch
    WHERE id = 1 AND (newest_epoch IS NULL OR NEW.epoch > newest_epoch);
END;

-- The chain is locked through its head row now; the old lock row would lock nothing.
DELETE FROM app_locks WHERE name = 'audit';
