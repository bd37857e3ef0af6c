-- The connection's NAVER WORKS token, shared by every replica. The access and
-- refresh tokens themselves are sealed in `secrets` (fields access_token and
-- refresh_token); this row holds what is not secret and the refresh lease.
CREATE TABLE tokens (
    connection_id      TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    tenant_id          TEXT NOT NULL,
    -- Increments with every token stored; replicas compare it with their cache.
    -- Random per stored token: what replicas compare with their in-memory copy
    -- (generations restart when credentials are rotated; this never repeats).
    token_id           TEXT,
    generation         INTEGER NOT NULL DEFAULT 0,
    issued_at          INTEGER,
    expires_at         INTEGER,
    refresh_expires_at INTEGER,
    scope              TEXT,
    -- The replica refreshing now, and until when its lease holds.
    lease_owner        TEXT,
    lease_until        INTEGER,
    updated_at         INTEGER NOT NULL
);

-- Reads and refreshes through the auth URLs. Kept when a connection is removed.
CREATE TABLE token_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    at            INTEGER NOT NULL,
    client_addr   TEXT NOT NULL,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL
);
CREATE INDEX token_audit_connection ON token_audit (connection_id, id);
