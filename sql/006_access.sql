-- 006: server secrets, and operation answers that no longer carry the session (docs/security.md).

-- Secrets every process and node of one deployment must share, made once by
-- whichever process needs one first: insert-if-absent, then read, so that
-- two processes racing to create the same secret end up with the one that
-- committed first. Today this holds the key that signs image URLs when the
-- configuration names none (url_signing_key).
CREATE TABLE server_secrets (
    name    text        PRIMARY KEY,
    value   bytea       NOT NULL CHECK (octet_length(value) >= 32),
    created timestamptz NOT NULL DEFAULT now()
);

-- An operation id is a name, not a key: its JSON no longer tells the session
-- it belongs to (the caller presented that session to see it).
CREATE OR REPLACE FUNCTION it_operation_json(o operations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', o.id, 'operation_id', o.id, 'type', o.type,
                              'params', o.params, 'image_ids', to_jsonb(o.image_ids), 'status', o.status,
                              'progress', o.progress, 'current', o.current, 'done', o.done, 'total', o.total,
                              'message', o.message, 'result', o.result, 'error', o.error,
                              'cancel_requested', o.cancel_requested, 'attempts', o.attempts,
                              'created_at', it_ts(o.created_at), 'started_at', it_ts(o.started_at),
                              'updated_at', it_ts(o.updated_at), 'finished_at', it_ts(o.finished_at))
$$;
