-- 011: the presence sweep tells how many entries left for each reason, so that the
-- process that swept can count them in imagetools_presence_leaves_total (docs/metrics.md).

-- The sweep of sql/010, answering {"closed": n, "expired": m} (reasons with
-- no entry left out; {} when nothing was due) instead of the total. The
-- reason is decided once, here, for the event and for the count alike.
CREATE FUNCTION it_presence_sweep_reasons(p_limit integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_session text;
    r presence;
    v_reason text;
    v_counts jsonb := '{}'::jsonb;
BEGIN
    FOR v_session IN SELECT DISTINCT p.session_id FROM presence p WHERE p.expires_at <= now() LIMIT p_limit LOOP
        PERFORM 1 FROM sessions WHERE id = v_session FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        FOR r IN DELETE FROM presence p WHERE p.session_id = v_session AND p.expires_at <= now() RETURNING * LOOP
            v_reason := CASE WHEN r.holder IS NOT NULL THEN 'expired'
                             WHEN r.device_id IS NOT NULL AND EXISTS (
                                  SELECT 1 FROM devices d WHERE d.id = r.device_id AND d.expires_at <= now())
                             THEN 'expired'
                             ELSE 'closed' END;
            PERFORM it_append_event(v_session, 'presence.left', it_presence_left_json(r, v_reason));
            v_counts := jsonb_set(v_counts, ARRAY[v_reason],
                                  to_jsonb(coalesce((v_counts ->> v_reason)::integer, 0) + 1));
        END LOOP;
    END LOOP;
    RETURN v_counts;
END
$$;

-- The total, as before, for callers that want only that.
CREATE OR REPLACE FUNCTION it_presence_sweep(p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    SELECT coalesce(sum(value::integer), 0)::integer FROM jsonb_each_text(it_presence_sweep_reasons(p_limit))
$$;
