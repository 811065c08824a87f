-- 001: sessions and the per-session event log (docs/event-log.md).

CREATE TABLE sessions (
    id             text        PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    -- Highest seq handed out; the row lock taken to bump it serialises the
    -- event-producing transactions of one session, so seq is gapless and
    -- commit order equals seq order.
    last_event_seq bigint      NOT NULL DEFAULT 0,
    -- Events with seq below this have been pruned; a cursor older than
    -- first_kept_seq - 1 cannot be served and gets session.resync.
    first_kept_seq bigint      NOT NULL DEFAULT 1,
    expiry_warned  boolean     NOT NULL DEFAULT false
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE events (
    session_id text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    type       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX events_created_at ON events (created_at);

-- Timestamps on the wire: UTC, millisecond precision, "Z" suffix.
CREATE FUNCTION it_ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The one way an event enters the log. Call it inside the transaction that
-- makes the change, as late as possible (it takes the session's row lock
-- until commit). Returns the event's seq, or NULL when the session does not
-- exist or has expired (the caller then rolls back).
CREATE FUNCTION it_append_event(p_session text, p_type text, p_payload jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    UPDATE sessions SET last_event_seq = last_event_seq + 1
     WHERE id = p_session AND expires_at > now()
    RETURNING last_event_seq INTO v_seq;
    IF v_seq IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO events (session_id, seq, type, payload) VALUES (p_session, v_seq, p_type, p_payload);
    -- Small payload (NOTIFY allows 8000 bytes): listeners read the row.
    PERFORM pg_notify('imagetools_events', p_session || ':' || v_seq);
    RETURN v_seq;
END
$$;

-- The wire form of an event (DESIGN §4), built where it is read: compact,
-- one line, members in the documented order.
CREATE FUNCTION it_event_json(e events) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT format('{"id":%s,"type":%s,"timestamp":%s,"data":%s}',
                  e.seq, to_json(e.type)::text, to_json(it_ts(e.created_at))::text, e.payload::text)
$$;
