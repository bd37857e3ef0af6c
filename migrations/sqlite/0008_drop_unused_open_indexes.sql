-- The claim finds the heads of the open conversations through the
-- *_open_conversation indexes (0007). These two, of the open rows by status
-- and due time, served an earlier claim; nothing reads them now, and every
-- insert and every status change of an open row wrote them (BENCHMARKS.md,
-- session 5).
DROP INDEX inbound_open;
DROP INDEX outbound_open;

-- Body hashes, written on every callback: one B-tree keyed by (connection,
-- hash) instead of a rowid table beside an index of its primary key.
CREATE TABLE inbound_dedup_keyed (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    body_hash     TEXT NOT NULL,
    seen_at       INTEGER NOT NULL,
    PRIMARY KEY (connection_id, body_hash)
) WITHOUT ROWID;
INSERT INTO inbound_dedup_keyed (connection_id, body_hash, seen_at)
    SELECT connection_id, body_hash, seen_at FROM inbound_dedup;
DROP TABLE inbound_dedup;
ALTER TABLE inbound_dedup_keyed RENAME TO inbound_dedup;
