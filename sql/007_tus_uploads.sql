-- 007: resumable (tus 1.0) uploads whose bytes arrive over many requests (docs/uploads.md, "Resumable uploads").

-- One row per upload that has been created and not yet expired. Its bytes
-- grow in an ordinary blob (the same chunk store as multipart uploads), one
-- committed step at a time, so what a request acknowledged survives a crash
-- of the server; when the last byte arrives the blob becomes an image's and
-- the row keeps only image_id, so a client that asks again learns that the
-- upload is complete instead of starting it over.
CREATE TABLE tus_uploads (
    -- The secret part of the upload URL: 192 random bits, a capability.
    id           text        PRIMARY KEY,
    -- The public name, in events: an event never carries the URL's secret.
    name         uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    session_id   text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- NULL once the bytes belong to an image (or after a refusal).
    blob_id      bigint      REFERENCES blobs (id) ON DELETE SET NULL,
    -- NULL while the client defers the length (Upload-Defer-Length: 1).
    length       bigint      CHECK (length >= 0),
    "offset"     bigint      NOT NULL DEFAULT 0 CHECK ("offset" >= 0),
    -- Upload-Metadata as the client sent it (echoed by HEAD), and the parts
    -- of it the image will take.
    metadata     text        NOT NULL DEFAULT '',
    filename     text        NOT NULL DEFAULT '',
    -- The file name sanitised for display (as images.filename), for events.
    display_name text        NOT NULL DEFAULT '',
    source       text        NOT NULL
                 CHECK (source IN ('web', 'android_app', 'browser_addon', 'cli', 'api')),
    image_id     uuid,
    -- The last upload.progress event sent (docs/uploads.md, "Progress").
    progress_pct integer     NOT NULL DEFAULT 0,
    progress_at  timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX tus_uploads_expires_at ON tus_uploads (expires_at);
CREATE INDEX tus_uploads_session_id ON tus_uploads (session_id);
CREATE INDEX tus_uploads_blob_id ON tus_uploads (blob_id);

-- The bytes of an unfinished upload go with its row, whichever way the row
-- goes: termination, expiry, or the cascade from its session.
CREATE FUNCTION it_tus_drop_blob() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.blob_id IS NOT NULL THEN
        DELETE FROM blobs WHERE id = OLD.blob_id
           AND NOT EXISTS (SELECT 1 FROM images WHERE blob_id = OLD.blob_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tus_uploads_drop_blob AFTER DELETE ON tus_uploads
    FOR EACH ROW EXECUTE FUNCTION it_tus_drop_blob();

-- Records that an upload holds p_offset bytes, moves its expiry to p_ttl
-- seconds from now, and appends upload.progress when the upload has moved
-- by at least one percent and p_interval_ms have passed since the last one:
-- the throttle lives in the row, so it holds across requests and nodes.
-- Call it inside the transaction that wrote the bytes, last (the event takes
-- the session's row lock). Returns whether an event was appended.
CREATE FUNCTION it_tus_advance(p_id text, p_offset bigint, p_ttl integer, p_interval_ms integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r tus_uploads;
    pct integer;
BEGIN
    UPDATE tus_uploads SET "offset" = p_offset, expires_at = now() + make_interval(secs => p_ttl)
     WHERE id = p_id RETURNING * INTO r;
    IF NOT FOUND OR r.length IS NULL OR r.length = 0 OR p_offset >= r.length THEN
        RETURN false;
    END IF;
    pct := (p_offset * 100 / r.length)::integer;
    IF pct < r.progress_pct + 1 OR clock_timestamp() - r.progress_at < make_interval(secs => p_interval_ms / 1000.0) THEN
        RETURN false;
    END IF;
    UPDATE tus_uploads SET progress_pct = pct, progress_at = clock_timestamp() WHERE id = p_id;
    PERFORM it_append_event(r.session_id, 'upload.progress',
                            jsonb_build_object('upload_id', r.name, 'filename', r.display_name, 'source', r.source,
                                               'offset', p_offset, 'length', r.length, 'progress', pct));
    RETURN true;
END
$$;

-- Housekeeping: deletes up to p_limit uploads past their expiry (their
-- blobs go with them, the trigger above), telling the session with
-- upload.failed for those that never finished. A session that is busy is
-- left for the next round, as in it_fail_abandoned_operations. Returns the
-- number of uploads deleted.
CREATE FUNCTION it_expire_tus_uploads(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_id text;
    v_session text;
    r tus_uploads;
    n integer := 0;
BEGIN
    FOR v_id, v_session IN SELECT id, session_id FROM tus_uploads WHERE expires_at <= now()
                            ORDER BY expires_at LIMIT p_limit LOOP
        PERFORM 1 FROM sessions WHERE id = v_session FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- A request still writing to the upload holds its row: skip it.
        SELECT * INTO r FROM tus_uploads WHERE id = v_id AND expires_at <= now() FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM tus_uploads WHERE id = v_id;
        IF r.image_id IS NULL THEN
            PERFORM it_append_event(r.session_id, 'upload.failed',
                                    jsonb_build_object('upload_id', r.name, 'filename', r.display_name,
                                                       'source', r.source, 'offset', r."offset",
                                                       'length', r.length, 'reason', 'expired'));
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
