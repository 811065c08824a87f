-- 010: who is connected to a session right now: one entry per announced client (docs/presence.md).

-- An entry is kept alive by the process that holds its connection (holder, a
-- random id per process instance), which renews every entry it holds in one
-- statement every presence_ttl / 3 seconds. An entry not renewed by
-- expires_at is deleted by whichever process sweeps first, and the DELETE ...
-- RETURNING appends its presence.left exactly once. A connection that ends
-- cleanly sets holder to NULL and expires_at a few seconds ahead (the grace),
-- so a tab that reconnects within them keeps its entry without a
-- left/joined pair. Entries kept alive by HTTP (POST /api/v1/presence) have
-- the holder 'http'; a CGI process that waits has none (it cannot renew).
CREATE TABLE presence (
    session_id text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    client_id  text        NOT NULL CHECK (client_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    device_id  text,
    label      text        NOT NULL,
    source     text        NOT NULL,
    transport  text        NOT NULL CHECK (transport IN ('websocket', 'sse', 'longpoll', 'http')),
    state      text        NOT NULL CHECK (state IN ('connected', 'uploading', 'idle')),
    since      timestamptz NOT NULL DEFAULT now(),
    holder     text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, client_id)
);
CREATE INDEX presence_expires_at ON presence (expires_at);
CREATE INDEX presence_device ON presence (device_id) WHERE device_id IS NOT NULL;

-- The payload of presence.joined and presence.updated, and an element of
-- GET /api/v1/presence.
CREATE FUNCTION it_presence_json(p presence) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('client_id', p.client_id, 'device_id', p.device_id,
                                                'label', p.label, 'source', p.source, 'transport', p.transport,
                                                'state', p.state, 'since', it_ts(p.since)))
$$;

CREATE FUNCTION it_presence_left_json(p presence, p_reason text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('client_id', p.client_id, 'device_id', p.device_id,
                                                'label', p.label, 'reason', p_reason))
$$;

-- A connection announced itself, or an HTTP client said what it does. Every
-- function here that appends an event takes the session's row lock first,
-- as every other writer of a session's rows does (sql/004), so that a join,
-- a sweep and the deletion of the session cannot deadlock.
--   p_holder     the process instance that holds the connection; 'http' for
--                POST /api/v1/presence; NULL for a CGI process (nobody renews it)
--   p_state      NULL: keep the entry's state ('connected' for a new one)
--   p_label, p_source  NULL: keep (defaults for a new entry)
--   p_ttl        seconds the entry lives without being renewed
-- A live entry keeps its transport and holder when the same client joins
-- over a lesser transport (a tab's heartbeat beside its WebSocket). Returns 'joined',
-- 'updated' (transport, state, label, source or device changed: an event),
-- 'kept' (nothing to tell), or NULL when the session does not exist, has
-- expired, or the device has been revoked.
CREATE FUNCTION it_presence_join(p_session text, p_client text, p_device text, p_label text, p_source text,
                                 p_transport text, p_state text, p_holder text, p_ttl integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    old presence;
    cur presence;
    v_stream boolean;
BEGIN
    PERFORM 1 FROM sessions WHERE id = p_session AND expires_at > now() FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- A revoked device's stream may still be open for the moment it takes
    -- to close it: it must not come back.
    -- A device's own label and source win over what its connection says.
    IF p_device IS NOT NULL THEN
        SELECT d.label, d.source INTO p_label, p_source FROM devices d
         WHERE d.id = p_device AND d.session_id = p_session
           AND d.revoked_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > now());
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT * INTO old FROM presence WHERE session_id = p_session AND client_id = p_client FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO presence (session_id, client_id, device_id, label, source, transport, state, holder, expires_at)
        VALUES (p_session, p_client, p_device, coalesce(p_label, 'Unnamed'), coalesce(p_source, 'unknown'),
                p_transport, coalesce(p_state, 'connected'), p_holder, now() + make_interval(secs => p_ttl))
        RETURNING * INTO cur;
        PERFORM it_append_event(p_session, 'presence.joined', it_presence_json(cur));
        RETURN 'joined';
    END IF;
    -- A live entry keeps its transport and holder when the same client
    -- connects over a lesser one as well (its WebSocket is the one to show,
    -- not the long-poll or the heartbeat beside it): websocket, then sse,
    -- then longpoll, then http.
    v_stream := old.holder IS NOT NULL AND old.expires_at > now()
                AND array_position(ARRAY['http', 'longpoll', 'sse', 'websocket'], p_transport)
                    < array_position(ARRAY['http', 'longpoll', 'sse', 'websocket'], old.transport);
    UPDATE presence SET device_id = coalesce(p_device, old.device_id),
                        label = coalesce(p_label, old.label),
                        source = coalesce(p_source, old.source),
                        transport = CASE WHEN v_stream THEN old.transport ELSE p_transport END,
                        state = coalesce(p_state, old.state),
                        holder = CASE WHEN v_stream THEN old.holder ELSE p_holder END,
                        expires_at = greatest(old.expires_at, now() + make_interval(secs => p_ttl))
     WHERE session_id = p_session AND client_id = p_client
    RETURNING * INTO cur;
    IF (cur.device_id, cur.label, cur.source, cur.transport, cur.state)
       IS DISTINCT FROM (old.device_id, old.label, old.source, old.transport, old.state) THEN
        PERFORM it_append_event(p_session, 'presence.updated', it_presence_json(cur));
        RETURN 'updated';
    END IF;
    RETURN 'kept';
END
$$;

-- A connection ended. With p_grace > 0 the entry stays for that many seconds
-- without a holder (the sweep then appends presence.left "closed"), unless
-- another connection of the same client takes it meanwhile; only the holder
-- named may let it go (NULL: any). With p_grace 0 it leaves now. Returns
-- whether an entry was let go.
CREATE FUNCTION it_presence_leave(p_session text, p_client text, p_holder text, p_grace integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r presence;
    n integer := 0;
BEGIN
    IF p_grace > 0 THEN
        UPDATE presence SET holder = NULL,
                            expires_at = least(expires_at, now() + make_interval(secs => p_grace))
         WHERE session_id = p_session AND client_id = p_client AND holder IS NOT DISTINCT FROM p_holder;
        RETURN FOUND;
    END IF;
    PERFORM 1 FROM sessions WHERE id = p_session FOR NO KEY UPDATE;
    FOR r IN DELETE FROM presence WHERE session_id = p_session AND client_id = p_client
                                    AND (p_holder IS NULL OR holder = p_holder) RETURNING * LOOP
        PERFORM it_append_event(p_session, 'presence.left', it_presence_left_json(r, 'closed'));
        n := n + 1;
    END LOOP;
    RETURN n > 0;
END
$$;

-- One process renews every entry it holds: the keys of its connections, as
-- two arrays of equal length. An entry another process holds is renewed too
-- (the same client connected twice) but keeps its holder; one without a
-- holder (in its grace) is taken. Rows are locked in key order, so two
-- processes renewing the same keys cannot deadlock. Returns the keys that
-- have no entry any more (swept while the process could not reach the
-- database): the caller joins them again.
CREATE FUNCTION it_presence_beat(p_holder text, p_ttl integer, p_sessions text[], p_clients text[])
RETURNS TABLE (session_id text, client_id text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH k AS (SELECT * FROM unnest(p_sessions, p_clients) AS k(s, c)),
         l AS (SELECT p.session_id, p.client_id FROM presence p JOIN k ON p.session_id = k.s AND p.client_id = k.c
                ORDER BY p.session_id, p.client_id FOR UPDATE OF p),
         u AS (UPDATE presence p SET expires_at = greatest(p.expires_at, now() + make_interval(secs => p_ttl)),
                                     holder = coalesce(p.holder, p_holder)
                 FROM l WHERE p.session_id = l.session_id AND p.client_id = l.client_id
               RETURNING p.session_id, p.client_id)
    SELECT k.s, k.c FROM k WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.session_id = k.s AND u.client_id = k.c);
END
$$;

-- Deletes entries that were not renewed in time, at most p_limit sessions'
-- worth, appending one presence.left each: "closed" when the connection
-- ended (no holder), "expired" when its holder stopped renewing it (the
-- process died or lost the database). A session another transaction holds
-- is left for the next round. Any process may call it at any time. Returns
-- the number of entries deleted.
CREATE FUNCTION it_presence_sweep(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_session text;
    r presence;
    n integer := 0;
BEGIN
    FOR v_session IN SELECT DISTINCT p.session_id FROM presence p WHERE p.expires_at <= now() LIMIT p_limit LOOP
        PERFORM 1 FROM sessions WHERE id = v_session FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        FOR r IN DELETE FROM presence p WHERE p.session_id = v_session AND p.expires_at <= now() RETURNING * LOOP
            PERFORM it_append_event(v_session, 'presence.left',
                                    it_presence_left_json(r, CASE WHEN r.holder IS NULL THEN 'closed'
                                                                  ELSE 'expired' END));
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;

-- A device was revoked: its entries leave now, with reason "revoked".
-- Called by the trigger below, and by anything else that ends a device.
-- Returns the number of entries deleted.
CREATE FUNCTION it_presence_revoke(p_session text, p_device text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r presence;
    n integer := 0;
BEGIN
    PERFORM 1 FROM sessions WHERE id = p_session FOR NO KEY UPDATE;
    FOR r IN DELETE FROM presence WHERE session_id = p_session AND device_id = p_device RETURNING * LOOP
        PERFORM it_append_event(p_session, 'presence.left', it_presence_left_json(r, 'revoked'));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

CREATE FUNCTION it_presence_device_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM it_presence_revoke(NEW.session_id, NEW.id);
    END IF;
    RETURN NULL;
END
$$;

-- The devices table comes with scoped tokens (sql/009); the trigger is made
-- wherever it exists, so that however a device is revoked, its entries go.
DO $$
BEGIN
    IF to_regclass('devices') IS NOT NULL THEN
        CREATE TRIGGER devices_presence_revoked AFTER UPDATE OF revoked_at ON devices
            FOR EACH ROW EXECUTE FUNCTION it_presence_device_revoked();
    END IF;
END
$$;
