-- The body hashes were keyed by (connection, hash): each callback wrote its
-- entry at a random place, one random page in the log per callback
-- (and again at the checkpoint), whatever the batch (BENCHMARKS.md, session
-- 8). A duplicate is the same body, so it carries the same `issuedTime` (a
-- common field of every callback, NAVERWORKS.md §3.3; '' when a body has
-- none), and callbacks arrive in about that order: keyed by it first, the
-- entries of a batch land side by side at the end of the tree.
--
-- No reference to the connection: a deleted connection's hashes are
-- forgotten with the others at the end of the window (`prune_dedup`), and
-- the cascade would have searched this table, which no longer begins with
-- the connection, for each deletion.
--
-- The hashes seen before this migration are not carried over: without
-- their bodies they cannot be keyed by time. NAVER WORKS does not re-send a
-- callback (NAVERWORKS.md §3.1); the window starts empty once.
DROP TABLE inbound_dedup;
CREATE TABLE inbound_dedup (
    issued        TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    body_hash     TEXT NOT NULL,
    seen_at       BIGINT NOT NULL,
    PRIMARY KEY (issued, connection_id, body_hash)
);
