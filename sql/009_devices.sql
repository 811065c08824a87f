-- 009: devices: scoped tokens, pairing codes and revocation (docs/security.md, docs/api.md).

-- A device is the public record of one scoped token. The token itself is
-- never stored: only the SHA-256 of its whole text, so that a copy of this
-- table (a backup, a replica) hands nobody a credential. The id is a name
-- for lists and revocation, never a key.
CREATE TABLE devices (
    id           text        PRIMARY KEY CHECK (id ~ '^dev_[A-Za-z0-9_-]{16}$'),
    session_id   text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    scope        text        NOT NULL CHECK (scope IN ('upload', 'view', 'full')),
    label        text        NOT NULL CHECK (char_length(label) BETWEEN 1 AND 64 AND label !~ '[[:cntrl:]]'),
    source       text        NOT NULL CHECK (source ~ '^[A-Za-z0-9_.-]{1,32}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- NULL: the token lives as long as its session.
    expires_at   timestamptz,
    last_seen_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX devices_session_id ON devices (session_id, created_at);

-- A pairing code is a single-use, short-lived credential that a device
-- exchanges for its own token (POST /pair). Stored hashed like tokens. Used
-- and expired codes are kept a day so that a second try is told "used" or
-- "expired" (410) rather than "unknown".
CREATE TABLE pairing_codes (
    code_hash  bytea       PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    session_id text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    scope      text        NOT NULL CHECK (scope IN ('upload', 'view', 'full')),
    -- The label the owner chose; the device may send its own instead.
    label      text        CHECK (char_length(label) BETWEEN 1 AND 64 AND label !~ '[[:cntrl:]]'),
    -- Lifetime of the token the exchange makes, seconds; 0: the session's.
    token_ttl  integer     NOT NULL DEFAULT 0 CHECK (token_ttl >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    device_id  text
);
CREATE INDEX pairing_codes_session_id ON pairing_codes (session_id);

-- The JSON of a device on the wire (GET /devices, POST /tokens, POST /pair).
-- expires_at is when the token stops working: its own expiry or its
-- session's, whichever comes first; last_seen_at is null until the token is
-- first used; revoked_at is there only once it is revoked.
CREATE FUNCTION it_device_json(d devices, p_session_expires timestamptz) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
               'device_id', d.id, 'label', d.label, 'source', d.source, 'scope', d.scope,
               'created_at', it_ts(d.created_at),
               'expires_at', it_ts(least(d.expires_at, p_session_expires)),
               'last_seen_at', it_ts(d.last_seen_at))
           || CASE WHEN d.revoked_at IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('revoked_at', it_ts(d.revoked_at)) END
$$;

-- Resolves a credential. For a session id (p_token_hash NULL): 200 with
-- scope 'full' while the session lives, else 404. For a token (p_cred NULL,
-- p_token_hash its SHA-256): 200 with the device's session, scope, label,
-- source and stored hash (the caller compares it again in constant time),
-- 401 when no live device has that hash (unknown, expired or revoked: the
-- answer does not say which), 404 when its session has expired. Always one
-- row. until_epoch is when the credential stops working (whole seconds,
-- rounded up). last_seen_at is refreshed at most every 30 seconds, and never
-- waits: a row locked by a revocation or an upload's final check is left for
-- the next time, and a read-only database (a standby after a failover) only
-- skips the refresh.
CREATE FUNCTION it_credential_check(p_cred text, p_token_hash bytea)
RETURNS TABLE (status integer, session_id text, scope text, device_id text, label text, source text,
               until_epoch bigint, token_hash bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    d devices;
    v_expires timestamptz;
BEGIN
    IF p_token_hash IS NULL THEN
        SELECT s.expires_at INTO v_expires FROM sessions s WHERE s.id = p_cred AND s.expires_at > now();
        IF NOT FOUND THEN
            RETURN QUERY SELECT 404, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                                NULL::bytea;
            RETURN;
        END IF;
        RETURN QUERY SELECT 200, p_cred, 'full'::text, NULL::text, NULL::text, NULL::text,
                            ceil(extract(epoch FROM v_expires))::bigint, NULL::bytea;
        RETURN;
    END IF;
    SELECT * INTO d FROM devices x WHERE x.token_hash = p_token_hash;
    IF NOT FOUND OR d.revoked_at IS NOT NULL OR d.expires_at <= now() THEN
        RETURN QUERY SELECT 401, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::bytea;
        RETURN;
    END IF;
    SELECT s.expires_at INTO v_expires FROM sessions s WHERE s.id = d.session_id AND s.expires_at > now();
    IF NOT FOUND THEN
        RETURN QUERY SELECT 404, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::bytea;
        RETURN;
    END IF;
    IF d.last_seen_at IS NULL OR d.last_seen_at < now() - interval '30 seconds' THEN
        BEGIN
            UPDATE devices x SET last_seen_at = now()
             WHERE x.id IN (SELECT y.id FROM devices y WHERE y.id = d.id FOR NO KEY UPDATE SKIP LOCKED);
        EXCEPTION WHEN read_only_sql_transaction THEN
            NULL;
        END;
    END IF;
    RETURN QUERY SELECT 200, d.session_id, d.scope, d.id, d.label, d.source,
                        ceil(extract(epoch FROM least(d.expires_at, v_expires)))::bigint, d.token_hash;
END
$$;

-- Room for one more device in session p_session, whose row the caller has
-- locked: devices revoked or expired for more than a day are deleted (with
-- any unfinished upload they began, which could not go on anyway), and the
-- session may hold p_max live devices and ten times as many rows in all, so
-- that minting and revoking in a loop cannot grow the table without bound.
CREATE FUNCTION it_device_room(p_session text, p_max integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM devices x
     WHERE x.session_id = p_session
       AND (x.revoked_at < now() - interval '1 day' OR x.expires_at < now() - interval '1 day');
    RETURN (SELECT count(*) FILTER (WHERE x.revoked_at IS NULL AND (x.expires_at IS NULL OR x.expires_at > now()))
                   < p_max AND count(*) < 10 * p_max
              FROM devices x WHERE x.session_id = p_session);
END
$$;

-- Makes a device for a token the caller generated (only its hash comes
-- here) in a live session, with its event. p_ttl 0: the token lives as long
-- as the session. Returns 201 and the device's JSON, 404 when the session is
-- unknown or expired, 409 when the session has no room (it_device_room).
CREATE FUNCTION it_device_mint(p_session text, p_device text, p_token_hash bytea, p_scope text, p_label text,
                               p_source text, p_ttl integer, p_max integer,
                               OUT status integer, OUT device jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    d devices;
    v_expires timestamptz;
BEGIN
    -- The session's row lock (taken again by it_append_event below)
    -- serialises the count against concurrent mints.
    SELECT s.expires_at INTO v_expires FROM sessions s WHERE s.id = p_session AND s.expires_at > now()
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        status := 404;
        RETURN;
    END IF;
    IF NOT it_device_room(p_session, p_max) THEN
        status := 409;
        RETURN;
    END IF;
    INSERT INTO devices (id, session_id, token_hash, scope, label, source, expires_at)
    VALUES (p_device, p_session, p_token_hash, p_scope, p_label, p_source,
            CASE WHEN p_ttl > 0 THEN now() + make_interval(secs => p_ttl) END)
    RETURNING * INTO d;
    device := it_device_json(d, v_expires);
    PERFORM it_append_event(p_session, 'device.paired',
                            jsonb_build_object('device_id', d.id, 'label', d.label, 'source', d.source,
                                               'scope', d.scope, 'expires_at', device->'expires_at'));
    status := 201;
END
$$;

-- Makes a pairing code (only its hash comes here) for a live session.
-- Codes of the session expired for more than a day are deleted on the way.
-- Returns 201 and the code's expiry, 404 for an unknown or expired session,
-- 409 when the session already has p_max codes waiting to be used.
CREATE FUNCTION it_pairing_create(p_session text, p_code_hash bytea, p_scope text, p_label text, p_token_ttl integer,
                                  p_ttl integer, p_max integer, OUT status integer, OUT expires_at text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_text text;
BEGIN
    PERFORM 1 FROM sessions s WHERE s.id = p_session AND s.expires_at > now()
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        status := 404;
        RETURN;
    END IF;
    DELETE FROM pairing_codes c WHERE c.session_id = p_session AND c.expires_at < now() - interval '1 day';
    IF (SELECT count(*) FROM pairing_codes c
         WHERE c.session_id = p_session AND c.used_at IS NULL AND c.expires_at > now()) >= p_max THEN
        status := 409;
        RETURN;
    END IF;
    INSERT INTO pairing_codes (code_hash, session_id, scope, label, token_ttl, expires_at)
    VALUES (p_code_hash, p_session, p_scope, p_label, p_token_ttl, now() + make_interval(secs => p_ttl))
    RETURNING it_ts(pairing_codes.expires_at) INTO v_text;
    expires_at := v_text;
    status := 201;
END
$$;

-- Exchanges a pairing code (by its hash) for a new device whose token the
-- caller generated. The code's row lock makes the exchange single-use: of
-- two concurrent exchanges, the second finds the code used. Returns 201
-- with the device's session and JSON; 401 'unknown' when no such code;
-- 410 'used' or 410 'expired' (also when its session has expired); 409
-- when the session has no room for another device (the code stays unused).
-- p_label NULL takes the owner's label, else 'Paired device'.
CREATE FUNCTION it_pairing_exchange(p_code_hash bytea, p_device text, p_token_hash bytea, p_label text,
                                    p_source text, p_max integer,
                                    OUT status integer, OUT reason text, OUT session_id text, OUT device jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c pairing_codes;
    d devices;
    v_expires timestamptz;
BEGIN
    SELECT * INTO c FROM pairing_codes x WHERE x.code_hash = p_code_hash FOR UPDATE;
    IF NOT FOUND THEN
        status := 401;
        reason := 'unknown';
        RETURN;
    END IF;
    IF c.used_at IS NOT NULL THEN
        status := 410;
        reason := 'used';
        RETURN;
    END IF;
    SELECT s.expires_at INTO v_expires FROM sessions s WHERE s.id = c.session_id AND s.expires_at > now()
       FOR NO KEY UPDATE;
    IF c.expires_at <= now() OR NOT FOUND THEN
        status := 410;
        reason := 'expired';
        RETURN;
    END IF;
    IF NOT it_device_room(c.session_id, p_max) THEN
        status := 409;
        reason := 'full';
        RETURN;
    END IF;
    INSERT INTO devices (id, session_id, token_hash, scope, label, source, expires_at)
    VALUES (p_device, c.session_id, p_token_hash, c.scope, coalesce(p_label, c.label, 'Paired device'), p_source,
            CASE WHEN c.token_ttl > 0 THEN now() + make_interval(secs => c.token_ttl) END)
    RETURNING * INTO d;
    UPDATE pairing_codes x SET used_at = now(), device_id = d.id WHERE x.code_hash = p_code_hash;
    device := it_device_json(d, v_expires);
    PERFORM it_append_event(c.session_id, 'device.paired',
                            jsonb_build_object('device_id', d.id, 'label', d.label, 'source', d.source,
                                               'scope', d.scope, 'expires_at', device->'expires_at'));
    status := 201;
    reason := NULL;
    session_id := c.session_id;
END
$$;

-- Revokes a device of a session: its token stops working when this
-- commits. Appends device.revoked, then tells listeners with
-- "revoked:<session>:<device_id>" (a third special form next to kept: and
-- expires:, see 008) so that they end every open stream the device
-- authenticated within a second. Returns false when the session has no
-- such live device.
CREATE FUNCTION it_device_revoke(p_session text, p_device text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    d devices;
BEGIN
    -- The session's row first, then the device's: the order an upload takes
    -- them in (it locks the session to store, then holds the device row
    -- FOR SHARE until it commits, it_device_live), so the two wait for each
    -- other instead of deadlocking.
    PERFORM 1 FROM sessions s WHERE s.id = p_session FOR NO KEY UPDATE;
    UPDATE devices x SET revoked_at = now()
     WHERE x.id = p_device AND x.session_id = p_session AND x.revoked_at IS NULL
    RETURNING * INTO d;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM it_append_event(p_session, 'device.revoked',
                            jsonb_build_object('device_id', d.id, 'label', d.label, 'reason', 'revoked'));
    PERFORM pg_notify('imagetools_events', 'revoked:' || p_session || ':' || p_device);
    RETURN true;
END
$$;

-- Whether a device's token still works. With p_lock, for the transaction
-- that stores what the device sent, just before it commits: FOR SHARE holds
-- off a concurrent revocation until this transaction ends, so either the
-- revocation committed first and the upload is refused, or the upload
-- commits before the token is revoked.
CREATE FUNCTION it_device_live(p_device text, p_lock boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v boolean;
BEGIN
    IF p_lock THEN
        SELECT x.revoked_at IS NULL AND (x.expires_at IS NULL OR x.expires_at > now()) INTO v
          FROM devices x WHERE x.id = p_device FOR SHARE;
    ELSE
        SELECT x.revoked_at IS NULL AND (x.expires_at IS NULL OR x.expires_at > now()) INTO v
          FROM devices x WHERE x.id = p_device;
    END IF;
    RETURN coalesce(v, false);
END
$$;

-- Whether the bucket p_key (see it_rate_take in 005) holds a token, without
-- taking it: for limits that count failures, asked before the attempt
-- (a failed credential then takes with it_rate_take). Returns the seconds
-- until a token is back when it holds none.
CREATE FUNCTION it_rate_peek(p_key text, p_cap double precision, p_per_sec double precision,
                             OUT allowed boolean, OUT retry_after double precision)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(t.level >= 1, true), CASE WHEN t.level >= 1 OR t.level IS NULL THEN 0
                                              ELSE (1 - t.level) / p_per_sec END
      FROM (SELECT (SELECT least(p_cap, r.tokens + p_per_sec * extract(epoch FROM clock_timestamp() - r.updated))
                      FROM rate_limits r WHERE r.key = p_key) AS level) t
$$;

-- A resumable upload remembers the device that created it, so that once
-- the device's token is revoked nothing more of the upload is stored, even
-- from a request that presents only the upload's URL.
ALTER TABLE tus_uploads ADD COLUMN device_id text REFERENCES devices (id) ON DELETE CASCADE;

-- it_credential_check behind the failure limit of p_fail_key (see
-- it_rate_peek): when the bucket is empty, 429 and the seconds until a
-- token is back, before the credential is looked at; else
-- it_credential_check's row with retry_after 0. One round trip for what
-- would otherwise take two. p_per_sec 0 (or p_fail_key NULL): no limit.
CREATE FUNCTION it_credential_check_limited(p_cred text, p_token_hash bytea, p_fail_key text,
                                            p_cap double precision, p_per_sec double precision)
RETURNS TABLE (status integer, session_id text, scope text, device_id text, label text, source text,
               until_epoch bigint, token_hash bytea, retry_after double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_allowed boolean;
    v_retry double precision;
BEGIN
    IF p_fail_key IS NOT NULL AND p_per_sec > 0 THEN
        SELECT r.allowed, r.retry_after INTO v_allowed, v_retry FROM it_rate_peek(p_fail_key, p_cap, p_per_sec) r;
        IF NOT v_allowed THEN
            RETURN QUERY SELECT 429, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                                NULL::bytea, v_retry;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT c.status, c.session_id, c.scope, c.device_id, c.label, c.source, c.until_epoch,
                        c.token_hash, 0::double precision
                   FROM it_credential_check(p_cred, p_token_hash) c;
END
$$;
