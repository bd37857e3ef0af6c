-- A tenant's status hook: the URL each of its messages' final status
-- (delivered, failed, cancelled) is posted to, signed with a secret kept in
-- `secrets` (field `status_secret`). NULL: none.
ALTER TABLE tenants ADD COLUMN status_url TEXT;
-- A message written while its tenant had a status hook carries when its
-- status is next to be posted (0: as soon as it is final; NULL: never, or
-- posted). While a post is under way it holds the post's lease; after a
-- failed post, the time of the next try.
ALTER TABLE outbound_messages ADD COLUMN notify_at BIGINT;
ALTER TABLE outbound_messages ADD COLUMN notify_attempts BIGINT NOT NULL DEFAULT 0;
-- Only final messages still to be posted enter it: a tenant without a hook
-- never writes to it, and a message waiting in the outbox is not in it.
CREATE INDEX outbound_notify ON outbound_messages (notify_at)
    WHERE notify_at IS NOT NULL AND status IN ('delivered', 'failed', 'cancelled');
