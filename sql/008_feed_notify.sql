-- 008: every change to a session that a listener may have cached is announced (docs/feed.md).

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

-- Same contract as in 001; the notification now carries the event itself when
-- it fits: "<session>:<seq>:<type>\n<json>", the json exactly as
-- it_event_json() makes it for a read. A listener whose subscribers are up to
-- date then needs no read at all. An event whose notification would reach
-- NOTIFY's limit (8000 bytes), or whose type could be mistaken for the
-- separators, gets the short "<session>:<seq>" and is read as before.
-- Listeners that know only the short form take "<session>:<seq>" from the
-- front (the CGI waiters) or ignore the payload and read on the next one.
CREATE OR REPLACE FUNCTION it_append_event(p_session text, p_type text, p_payload jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_ev events;
    v_note text;
BEGIN
    UPDATE sessions SET last_event_seq = last_event_seq + 1
     WHERE id = p_session AND expires_at > now()
    RETURNING last_event_seq INTO v_seq;
    IF v_seq IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (session_id, seq, type, payload) VALUES (p_session, v_seq, p_type, p_payload)
    RETURNING * INTO v_ev;
    v_note := p_session || ':' || v_seq;
    IF p_type ~ '^[A-Za-z0-9._-]{1,100}$' AND octet_length(p_payload::text) < 7800 THEN
        v_note := v_note || ':' || p_type || E'\n' || it_event_json(v_ev);
        IF octet_length(v_note) >= 8000 THEN
            v_note := p_session || ':' || v_seq;
        END IF;
    END IF;
    PERFORM pg_notify('imagetools_events', v_note);
    RETURN v_seq;
END
$$;
