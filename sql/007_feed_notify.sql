-- 007: every change to a session that a listener may have cached is announced (docs/feed.md).

-- A listener that checked a session while its LISTEN connection stayed up
-- already hears of new events ("<session>:<seq>") and of the session's end
-- ("<session>:0"). These two notifications cover the rest, so that it can
-- answer "is this session valid, what are its first kept and last ids" without
-- asking again:
--   "kept:<session>:<first_kept_seq>"  pruning (it_prune_events, or anything
--                                      else) raised the first kept id;
--   "expires:<session>:<epoch>"        the expiry changed (whole seconds,
--                                      rounded up, as the feed's check reads it).
-- Both are sent when the change commits, in commit order with the others. The
-- prefix makes them unlike "<session>:<seq>", so a listener that does not know
-- these forms ignores them. it_append_event updates neither column, so event
-- appends do not fire the trigger.
CREATE FUNCTION it_sessions_announce() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.first_kept_seq > OLD.first_kept_seq THEN
        PERFORM pg_notify('imagetools_events', 'kept:' || NEW.id || ':' || NEW.first_kept_seq);
    END IF;
    IF NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN
        PERFORM pg_notify('imagetools_events',
                          'expires:' || NEW.id || ':' || ceil(extract(epoch FROM NEW.expires_at))::bigint);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_announce AFTER UPDATE OF first_kept_seq, expires_at ON sessions
    FOR EACH ROW EXECUTE FUNCTION it_sessions_announce();
