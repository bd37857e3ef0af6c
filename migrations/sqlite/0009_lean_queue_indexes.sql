-- Every index of the queues that begins with the connection is written in
-- a random place by each row (B2 and B4 in BENCHMARKS.md: the log carried
-- ~110 KB per message, index pages most of it). Two of them are made to
-- write less:
--
-- The send API's idempotency keys: replies to callbacks have none, and
-- indexing their NULL keys cost every reply two page writes. Only keyed
-- rows are indexed now; `connection_id = $1 AND idempotency_group = $2`
-- implies the key is not null, so the lookup still uses the index, and two
-- rows with the same key are still refused.
DROP INDEX outbound_idempotency;
CREATE UNIQUE INDEX outbound_idempotency ON outbound_messages (connection_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX outbound_idempotency_group;
CREATE INDEX outbound_idempotency_group ON outbound_messages (connection_id, idempotency_group)
    WHERE idempotency_group IS NOT NULL;
--
-- The events of a connection by status: every status change (claimed, done)
-- moved its entry, a page write each. The listing reads a connection's
-- events newest first, which an index without the status serves, written
-- once per event; the dead events (replayed, listed) keep a small index of
-- their own, which no other event enters.
DROP INDEX inbound_by_status;
CREATE INDEX inbound_by_connection ON inbound_events (connection_id, seq);
CREATE INDEX inbound_dead ON inbound_events (connection_id, seq) WHERE status = 'dead';
