-- 004: abandoned jobs are failed taking the session lock before the job's (docs/worker.md, "Locks").

-- Same contract as in 003. Every other writer of a session's rows (enqueue,
-- the worker, deleting a session) locks the session first; taking the job
-- first here could deadlock with a client deleting that session. Both locks
-- are taken without waiting: a busy session or job is simply left for the
-- next round, a second later.
CREATE OR REPLACE FUNCTION it_fail_abandoned_operations(p_max_attempts integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_session text;
    r operations;
    n integer := 0;
BEGIN
    FOR v_id, v_session IN SELECT id, session_id FROM operations
                            WHERE status = 'running' AND lease_until < now() AND attempts >= p_max_attempts
                            ORDER BY created_at LIMIT 100 LOOP
        PERFORM 1 FROM sessions WHERE id = v_session FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        SELECT * INTO r FROM operations
         WHERE id = v_id AND status = 'running' AND lease_until < now() AND attempts >= p_max_attempts
           FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
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
