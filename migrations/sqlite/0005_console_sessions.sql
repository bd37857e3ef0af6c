-- Signed-in browser sessions of the console. The cookie holds a random
-- 256-bit token; only its SHA-256 is stored. A tenant's sessions go with it.
-- `role` is 'tenant' (signed in with the tenant's API key) or 'admin' (the
-- admin token; `tenant_id` is then the tenant being looked at, if any).
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    tenant_id   TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
