-- The send API: a retried request with the same Idempotency-Key returns the
-- same messages instead of sending twice. The key is stored on the first
-- part of a request (unique per connection) and as the group of every part.
ALTER TABLE outbound_messages ADD COLUMN idempotency_key TEXT;
ALTER TABLE outbound_messages ADD COLUMN idempotency_group TEXT;
CREATE UNIQUE INDEX outbound_idempotency ON outbound_messages (connection_id, idempotency_key);
CREATE INDEX outbound_idempotency_group ON outbound_messages (connection_id, idempotency_group);
CREATE INDEX outbound_by_connection ON outbound_messages (connection_id, created_at);
