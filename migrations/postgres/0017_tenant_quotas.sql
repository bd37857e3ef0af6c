-- Quotas a tenant has of its own (NULL: the configuration's default): rows
-- open in its queues, and callbacks accepted per second.
ALTER TABLE tenants ADD COLUMN max_open_rows BIGINT;
ALTER TABLE tenants ADD COLUMN max_callbacks_per_second BIGINT;
-- Callbacks stored as refused (over a quota) are replayed like dead ones,
-- through an index of their own that only a refused callback enters.
CREATE INDEX inbound_refused ON inbound_events (connection_id, seq) WHERE status = 'refused';
-- Deleting a connection now removes its audit entries and dedup hashes
-- (`Store::purge_connection`); those of connections deleted before are
-- removed once here (retention walks only live connections).
DELETE FROM token_audit WHERE connection_id NOT IN (SELECT id FROM connections);
DELETE FROM inbound_dedup WHERE connection_id NOT IN (SELECT id FROM connections);
