-- One-time console sign-in links (`botgate demo` prints one): the link holds
-- a random 256-bit token, only its SHA-256 is stored; taking the link deletes
-- the row, so it works once. A tenant's links go with it.
CREATE TABLE console_links (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    target      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
