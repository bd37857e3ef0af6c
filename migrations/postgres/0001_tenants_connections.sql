-- Tenants, NAVER WORKS connections, and every encrypted value.
-- Ids are prefixed text (ten_…, con_…); times are Unix milliseconds.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    api_key_hash  TEXT NOT NULL UNIQUE,
    engine_kind   TEXT NOT NULL DEFAULT 'echo' CHECK (engine_kind IN ('echo', 'http', 'rasa')),
    engine_url    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE connections (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    public_id             TEXT NOT NULL UNIQUE,
    channel               TEXT NOT NULL,
    bot_id                TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    service_account       TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    rate_limit_per_minute BIGINT NOT NULL,
    private_key_info      TEXT NOT NULL,
    auth_header_hash      TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (tenant_id, channel, bot_id)
);
CREATE INDEX connections_tenant ON connections (tenant_id, created_at);

-- Every secret botgate can read back, sealed with AES-256-GCM. owner_id is the
-- connection id, or the tenant id for tenant-level secrets; the tenant,
-- connection and field are bound into the ciphertext as associated data.
CREATE TABLE secrets (
    owner_id      TEXT NOT NULL,
    field         TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id TEXT REFERENCES connections (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    nonce         BYTEA NOT NULL,
    ciphertext    BYTEA NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (owner_id, field)
);
CREATE INDEX secrets_key_id ON secrets (key_id);
