-- NAVER WORKS user-account connections (issue 24): a person's token, from
-- the OAuth authorization-code flow, lives in the same row as a service
-- account's. When its refresh token is refused (expired after about 90
-- days, or revoked) no JWT can stand in, so the row says since when the
-- connection needs a person to authorise it again; a new authorisation
-- clears it. NULL for every service-account connection.
ALTER TABLE tokens ADD COLUMN reauthorize_since BIGINT;
