-- The benchmark's programs, installed into retask's and into the seed's
-- schema alike: a no-op, and one that notes the moment it starts (pickup
-- latency is that moment minus the moment its task was enqueued).

CREATE TABLE bench_starts (i integer PRIMARY KEY, started timestamptz NOT NULL);

CREATE FUNCTION bench_noop(params jsonb) RETURNS text
LANGUAGE sql AS $$ SELECT 'ok' $$;

-- clock_timestamp(), not now(): now() is the start of the worker's transaction,
-- which may have begun before this task was taken.
CREATE FUNCTION bench_started(params jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_starts VALUES ((params ->> 'i')::integer, clock_timestamp())
    ON CONFLICT DO NOTHING;
    RETURN 'ok';
END
$$;
