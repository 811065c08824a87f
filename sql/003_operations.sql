-- 003: the long-operation job queue and the worker's housekeeping (docs/worker.md).

CREATE TABLE operations (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id       text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    type             text        NOT NULL CHECK (type IN ('bulk_compress', 'bulk_resize', 'bulk_convert')),
    params           jsonb       NOT NULL DEFAULT '{}',
    image_ids        uuid[]      NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
                                 CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress         integer     NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    -- The image being worked on (1-based, as in operation.progress).
    current          integer     NOT NULL DEFAULT 0,
    -- Images finished so far. Each image's new version, its image.updated
    -- event and this counter commit together, so a job resumed by another
    -- worker after a crash continues with image done + 1 and never
    -- processes an image twice.
    done             integer     NOT NULL DEFAULT 0,
    total            integer     NOT NULL CHECK (total > 0),
    message          text        NOT NULL DEFAULT '',
    -- {"images": [{"image_id", "status", "bytes_before", "bytes_after", ...}],
    --  "succeeded", "failed", "bytes_before", "bytes_after"}
    result           jsonb       NOT NULL DEFAULT '{"images": []}',
    error            text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    -- The claim: a worker owns a running job until lease_until and renews it
    -- between images. An expired lease means the worker died or hung.
    lease_owner      text,
    lease_until      timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX operations_session ON operations (session_id, created_at);
-- The queue proper: only unfinished jobs, oldest first.
CREATE INDEX operations_pending ON operations (created_at) WHERE status IN ('queued', 'running');

-- The wire form of an operation (docs/api.md), built in one place.
CREATE FUNCTION it_operation_json(o operations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', o.id, 'operation_id', o.id, 'session_id', o.session_id, 'type', o.type,
                              'params', o.params, 'image_ids', to_jsonb(o.image_ids), 'status', o.status,
                              'progress', o.progress, 'current', o.current, 'done', o.done, 'total', o.total,
                              'message', o.message, 'result', o.result, 'error', o.error,
                              'cancel_requested', o.cancel_requested, 'attempts', o.attempts,
                              'created_at', it_ts(o.created_at), 'started_at', it_ts(o.started_at),
                              'updated_at', it_ts(o.updated_at), 'finished_at', it_ts(o.finished_at))
$$;

-- Running jobs whose lease ran out after p_max_attempts claims are given up:
-- failed with an operation.failed event, so no job stays "running" forever.
-- Returns how many were failed.
CREATE FUNCTION it_fail_abandoned_operations(p_max_attempts integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r operations;
    n integer := 0;
BEGIN
    FOR r IN SELECT * FROM operations
              WHERE status = 'running' AND lease_until < now() AND attempts >= p_max_attempts
              ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED LOOP
        UPDATE operations SET status = 'failed', error = 'abandoned', lease_owner = NULL, lease_until = NULL,
               message = 'Stopped: the worker was lost ' || p_max_attempts || ' times',
               updated_at = now(), finished_at = now()
         WHERE id = r.id;
        PERFORM it_append_event(r.session_id, 'operation.failed',
                                jsonb_build_object('operation_id', r.id, 'operation_type', r.type,
                                                   'reason', 'abandoned', 'result', r.result));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Sends session.expiring once to every live session that expires within
-- p_warning seconds (sessions.expiry_warned remembers it). Returns the count.
CREATE FUNCTION it_warn_expiring_sessions(p_warning integer, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT id, expires_at FROM sessions
              WHERE NOT expiry_warned AND expires_at > now()
                AND expires_at <= now() + make_interval(secs => p_warning)
              ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
        UPDATE sessions SET expiry_warned = true WHERE id = r.id;
        PERFORM it_append_event(r.id, 'session.expiring',
                                jsonb_build_object('expires_at', it_ts(r.expires_at),
                                                   'seconds_left',
                                                   greatest(0, ceil(extract(epoch FROM r.expires_at - now())))::integer));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Deletes expired sessions (their images, events and operations cascade) and
-- tells listeners with "<session>:0" so open streams close. Returns the count.
CREATE FUNCTION it_delete_expired_sessions(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_id text;
    n integer := 0;
BEGIN
    FOR v_id IN DELETE FROM sessions
                 WHERE id IN (SELECT id FROM sessions WHERE expires_at <= now()
                               ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
                RETURNING id LOOP
        PERFORM pg_notify('imagetools_events', v_id || ':0');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Deletes events older than p_retention seconds. Per session it removes a
-- prefix of the log (every seq up to the newest old one) and raises
-- first_kept_seq past it in the same transaction, so a reader never sees a
-- hole: a cursor before first_kept_seq - 1 gets session.resync. Returns the
-- number of events deleted.
CREATE FUNCTION it_prune_events(p_retention integer, p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    d bigint;
    n bigint := 0;
BEGIN
    FOR r IN SELECT session_id, max(seq) AS upto FROM events
              WHERE created_at < now() - make_interval(secs => p_retention)
              GROUP BY session_id ORDER BY session_id LIMIT p_limit LOOP
        UPDATE sessions SET first_kept_seq = greatest(first_kept_seq, r.upto + 1) WHERE id = r.session_id;
        DELETE FROM events WHERE session_id = r.session_id AND seq <= r.upto;
        GET DIAGNOSTICS d = ROW_COUNT;
        n := n + d;
    END LOOP;
    RETURN n;
END
$$;
