-- Inbound callbacks (the durable inbox) and outbound messages (the outbox).
-- `seq` is the arrival order; events and replies of one conversation are
-- handled strictly in `seq` order. Claims are leases (locked_by/locked_until)
-- committed before any network call.

ALTER TABLE tenants ADD COLUMN fallback_text TEXT;

CREATE TABLE inbound_events (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    connection_id   TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    conversation    TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    raw             BYTEA NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_by       TEXT,
    locked_until    BIGINT,
    last_error      TEXT,
    received_at     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX inbound_open ON inbound_events (status, next_attempt_at) WHERE status IN ('pending', 'processing');
CREATE INDEX inbound_conversation ON inbound_events (connection_id, conversation, seq);
CREATE INDEX inbound_by_status ON inbound_events (connection_id, status, seq);

-- Body hashes seen recently, per connection: callbacks carry no event id.
CREATE TABLE inbound_dedup (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    body_hash     TEXT NOT NULL,
    seen_at       BIGINT NOT NULL,
    PRIMARY KEY (connection_id, body_hash)
);

CREATE TABLE outbound_messages (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    connection_id   TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    event_id        TEXT,
    conversation    TEXT NOT NULL,
    target_kind     TEXT NOT NULL CHECK (target_kind IN ('user', 'channel')),
    target_id       TEXT NOT NULL,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_by       TEXT,
    locked_until    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX outbound_open ON outbound_messages (status, next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX outbound_conversation ON outbound_messages (connection_id, conversation, seq);
