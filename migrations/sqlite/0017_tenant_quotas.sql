-- Quotas a tenant has of its own (NULL: the configuration's default): rows
-- open in its queues, and callbacks accepted per second.
ALTER TABLE tenants ADD COLUMN max_open_rows BIGINT;
ALTER TABLE tenants ADD COLUMN max_callbacks_per_second BIGINT;
-- Callbacks stored as refused (over a quota) are replayed like dead ones,
-- through an index of their own that only a refused callback enters.
CREATE INDEX inbound_refused ON inbound_events (connection_id, seq) WHERE status = 'refused';
