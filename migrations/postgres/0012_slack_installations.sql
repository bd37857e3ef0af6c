-- Slack installs (issue 23): one installation per (connection, workspace),
-- its bot token and, with token rotation, its refresh token sealed in
-- `secrets` (owner: the connection; field: `slack_bot_token/{team}`,
-- `slack_refresh_token/{team}`, so that the associated data names the
-- installation). `generation` and the lease make a refresh single-flight
-- across replicas, as for NAVER WORKS tokens.
CREATE TABLE slack_installations (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    team_id       TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    enterprise_id TEXT,
    team_name     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    bot_user_id   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'needs_reinstall')),
    expires_at    BIGINT,
    generation    BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    installed_at  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, team_id)
);

-- OAuth `state`s in flight: stored hashed, single use, bound to the
-- connection and to the browser that started the flow (a cookie, also
-- stored hashed), expiring.
CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    browser_hash  TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
