-- A tenant's activity: who changed what (connections, credentials, the
-- engine, the API key, quotas, installations, replays), from where. Values
-- are never stored, only what changed. Kept when a connection is removed
-- (its removal is an entry); removed with the tenant.
CREATE TABLE activity (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT,
    at            BIGINT NOT NULL,
    action        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    via           TEXT NOT NULL,
    client_addr   TEXT NOT NULL,
    detail        TEXT NOT NULL
);
CREATE INDEX activity_tenant ON activity (tenant_id, id);
CREATE INDEX activity_at ON activity (at);
