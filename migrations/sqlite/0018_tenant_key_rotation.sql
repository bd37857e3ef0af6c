-- A tenant's API key can be replaced (`POST /api/v1/tenants/{id}/api-key`);
-- the key it replaces may stay valid until `previous_api_key_until` (Unix
-- ms) so that its callers can move over, and not at all when that is NULL.
ALTER TABLE tenants ADD COLUMN previous_api_key_hash TEXT;
ALTER TABLE tenants ADD COLUMN previous_api_key_until BIGINT;
CREATE UNIQUE INDEX tenants_previous_api_key ON tenants (previous_api_key_hash)
    WHERE previous_api_key_hash IS NOT NULL;
