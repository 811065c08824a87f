-- 002: images and their bytes, stored as chunk rows (docs/storage.md).

-- A blob is an immutable byte string: written once, front to back, inside
-- the transaction that makes it visible, then only read or deleted. A new
-- image version is a new blob swapped in, never an edit of an old one.
CREATE TABLE blobs (
    id         bigserial   PRIMARY KEY,
    -- Every chunk but the last holds exactly chunk_size bytes, so the chunk
    -- holding any offset is offset / chunk_size: ranges need no index scan
    -- beyond the primary key.
    chunk_size integer     NOT NULL CHECK (chunk_size > 0),
    size       bigint      NOT NULL DEFAULT 0 CHECK (size >= 0),
    -- Lower-case hex, set when the writer finishes.
    sha256     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blob_chunks (
    blob_id bigint  NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    n       integer NOT NULL CHECK (n >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (blob_id, n)
);
-- Image formats are already compressed: EXTERNAL keeps the chunks out of
-- line in TOAST without a pointless pglz attempt on every write, and lets
-- substring() on a chunk read only the slices it needs.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE images (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id        text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- Sanitised for display (no path, no control characters, bounded);
    -- original_filename is what the client sent (bounded, valid UTF-8).
    -- Neither is ever used as a path.
    filename          text        NOT NULL,
    original_filename text        NOT NULL,
    -- Sniffed from the bytes, never the client's Content-Type.
    content_type      text        NOT NULL,
    size              bigint      NOT NULL CHECK (size >= 0),
    sha256            text        NOT NULL,
    width             integer     NOT NULL CHECK (width > 0),
    height            integer     NOT NULL CHECK (height > 0),
    source            text        NOT NULL
                      CHECK (source IN ('web', 'android_app', 'browser_addon', 'cli', 'api')),
    -- 1 for the upload, +1 for each new version (the worker's operations).
    version           integer     NOT NULL DEFAULT 1,
    blob_id           bigint      NOT NULL REFERENCES blobs (id),
    thumb_blob_id     bigint      REFERENCES blobs (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Listing order and pagination cursor: strictly increasing in insertion
    -- order, unlike created_at (now() is shared by a whole transaction).
    pos               bigint      GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX images_session_pos ON images (session_id, pos DESC);
CREATE INDEX images_blob_id ON images (blob_id);
CREATE INDEX images_thumb_blob_id ON images (thumb_blob_id);

-- The bytes go with their image, whichever way it goes: DELETE of the
-- image, the cascade from its session, or a new version replacing the blob.
-- Doing it in the database means no path can forget it and no orphan
-- survives a committed change.
CREATE FUNCTION it_images_drop_blobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM blobs WHERE id IN (OLD.blob_id, OLD.thumb_blob_id);
    ELSE
        IF OLD.blob_id IS DISTINCT FROM NEW.blob_id THEN
            DELETE FROM blobs WHERE id = OLD.blob_id;
        END IF;
        IF OLD.thumb_blob_id IS DISTINCT FROM NEW.thumb_blob_id AND OLD.thumb_blob_id IS NOT NULL THEN
            DELETE FROM blobs WHERE id = OLD.thumb_blob_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER images_drop_blobs AFTER DELETE OR UPDATE OF blob_id, thumb_blob_id ON images
    FOR EACH ROW EXECUTE FUNCTION it_images_drop_blobs();
