-- 005: rate limits shared by every process and node, and per-process metrics (docs/security.md, docs/metrics.md).

-- One token bucket per key ("sessions:<addr>", "uploads:s:<session>", ...).
-- Unlogged: after a crash the buckets start full again, which is harmless,
-- and no bucket update ever waits for the WAL.
CREATE UNLOGGED TABLE rate_limits (
    key     text             PRIMARY KEY,
    tokens  double precision NOT NULL,
    -- The outcome of the last take, so that the single UPSERT below can
    -- report it in RETURNING (which only sees the new row).
    allowed boolean          NOT NULL,
    updated timestamptz      NOT NULL
);

-- Takes one token from the bucket key, which holds at most p_cap tokens and
-- gains p_per_sec tokens per second. One statement, one row lock: concurrent
-- takes of the same key from any process or node are serialised by the row
-- lock, so the limit holds across the whole deployment. A refused take
-- consumes nothing, so a client that keeps knocking gets in again as soon as
-- a token is back. Returns whether the take succeeded and, when it did not,
-- the seconds until a token is back.
CREATE FUNCTION it_rate_take(p_key text, p_cap double precision, p_per_sec double precision,
                             OUT allowed boolean, OUT retry_after double precision)
LANGUAGE sql AS $$
    INSERT INTO rate_limits AS r (key, tokens, allowed, updated)
    VALUES (p_key, p_cap - 1, true, clock_timestamp())
    ON CONFLICT (key) DO UPDATE SET
        allowed = least(p_cap, r.tokens + p_per_sec * extract(epoch FROM clock_timestamp() - r.updated)) >= 1,
        tokens  = least(p_cap, r.tokens + p_per_sec * extract(epoch FROM clock_timestamp() - r.updated))
                  - CASE WHEN least(p_cap, r.tokens + p_per_sec * extract(epoch FROM clock_timestamp() - r.updated)) >= 1
                         THEN 1 ELSE 0 END,
        updated = clock_timestamp()
    RETURNING r.allowed, CASE WHEN r.allowed THEN 0 ELSE (1 - r.tokens) / p_per_sec END
$$;

-- Counters and gauges of every long-running process (imagetools.fcgi,
-- imagetools-wsbridge, imagetools-worker), flushed every few seconds and at
-- exit; CGI-mode processes add their counts to one row per host with pid 0.
-- /metrics sums counters over every row (rows of processes that are gone are
-- folded into the 'retired' row, so totals never go backwards) and gauges
-- over the rows updated recently. Unlogged: metrics are not worth WAL.
CREATE UNLOGGED TABLE process_metrics (
    host     text        NOT NULL,
    program  text        NOT NULL,
    pid      integer     NOT NULL,
    started  timestamptz NOT NULL,
    updated  timestamptz NOT NULL DEFAULT now(),
    counters jsonb       NOT NULL DEFAULT '{}',
    gauges   jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (host, program, pid, started)
);

-- Adds two {"name{labels}": number} objects key by key.
CREATE FUNCTION it_metrics_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
      FROM (SELECT key, sum(value::numeric) AS total
              FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'))
                    UNION ALL
                    SELECT * FROM jsonb_each_text(coalesce(b, '{}'))) kv
             GROUP BY key) s
$$;

-- Folds the counters of processes silent for longer than p_stale seconds
-- into the single 'retired' row and deletes their rows. Returns the number
-- of rows folded.
CREATE FUNCTION it_metrics_retire(p_stale integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_sum jsonb := '{}';
    v_n   integer := 0;
    r     record;
BEGIN
    FOR r IN DELETE FROM process_metrics
              WHERE updated < now() - make_interval(secs => p_stale) AND program <> 'retired'
              RETURNING counters
    LOOP
        v_sum := it_metrics_add(v_sum, r.counters);
        v_n := v_n + 1;
    END LOOP;
    IF v_n > 0 THEN
        INSERT INTO process_metrics (host, program, pid, started, counters)
        VALUES ('*', 'retired', 0, 'epoch', v_sum)
        ON CONFLICT (host, program, pid, started)
        DO UPDATE SET counters = it_metrics_add(process_metrics.counters, EXCLUDED.counters), updated = now();
    END IF;
    RETURN v_n;
END
$$;
