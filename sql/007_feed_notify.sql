-- 007: pruning announces the new first kept id, so a listener can trust what it cached (docs/feed.md).

-- Same contract as in 003, plus one notification per pruned session,
-- "kept:<session>:<first_kept_seq>", delivered when the prune commits. A
-- listener that checked a session while its LISTEN connection stayed up then
-- knows everything that can change about it without asking again: new events
-- ("<session>:<seq>"), its end ("<session>:0") and now its first kept id.
-- The "kept:" prefix makes the payload unlike "<session>:<seq>", so a
-- listener that does not know this form ignores it.
CREATE OR REPLACE FUNCTION it_prune_events(p_retention integer, p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    d bigint;
    v_kept bigint;
    n bigint := 0;
BEGIN
    FOR r IN SELECT session_id, max(seq) AS upto FROM events
              WHERE created_at < now() - make_interval(secs => p_retention)
              GROUP BY session_id ORDER BY session_id LIMIT p_limit LOOP
        UPDATE sessions SET first_kept_seq = greatest(first_kept_seq, r.upto + 1) WHERE id = r.session_id
        RETURNING first_kept_seq INTO v_kept;
        DELETE FROM events WHERE session_id = r.session_id AND seq <= r.upto;
        GET DIAGNOSTICS d = ROW_COUNT;
        n := n + d;
        IF v_kept IS NOT NULL THEN
            PERFORM pg_notify('imagetools_events', 'kept:' || r.session_id || ':' || v_kept);
        END IF;
    END LOOP;
    RETURN n;
END
$$;
