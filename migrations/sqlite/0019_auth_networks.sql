-- The networks a connection's auth URLs answer (CIDR, comma-separated;
-- empty: any address that presents the auth header).
ALTER TABLE connections ADD COLUMN auth_networks TEXT NOT NULL DEFAULT '';
