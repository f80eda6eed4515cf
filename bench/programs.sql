-- The benchmark's programs, installed into retask's and into the seed's
-- schema alike: a no-op, one that notes the moment it starts (pickup
-- latency is that moment minus the moment its task was enqueued), and
-- retask.lucky's odds for the seed, whose schema has no retask.lucky.

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

-- 30% success, like retask.lucky with its default probability.
CREATE FUNCTION bench_lucky(params jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF random() < 0.3 THEN
        RETURN 'Мне повезло';
    END IF;
    RAISE EXCEPTION 'Не повезло';
END
$$;
