-- Tell every replica's hot-path cache what changed (src/store/cache.rs).
-- The payload is 'c:<connection id>' or 't:<tenant id>'. NOTIFY is delivered
-- only when, and after, the transaction commits. Token rows notify when a
-- token is issued, refreshed or dropped, not when a refresh lease is taken.

CREATE FUNCTION botgate_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('botgate_cache', 't:' || changed.id);
    ELSIF TG_TABLE_NAME = 'connections' THEN
        PERFORM pg_notify('botgate_cache', 'c:' || changed.id);
    ELSE
        PERFORM pg_notify('botgate_cache', 'c:' || changed.connection_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify_change AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION botgate_notify_change();
CREATE TRIGGER connections_notify_change AFTER UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION botgate_notify_change();
CREATE TRIGGER tokens_notify_change
    AFTER INSERT OR DELETE OR UPDATE OF token_id, generation, issued_at, expires_at, scope ON tokens
    FOR EACH ROW EXECUTE FUNCTION botgate_notify_change();
