-- retask: schedules. A schedule enqueues a program on a cron expression, in a
-- time zone. Reading cron is the worker's (croner, in TypeScript): SQL keeps
-- the schedules, checks what it can (the name, the expression's shape, the
-- time zone, the params), and makes each slot's task be enqueued once however
-- many workers find it due: fire_schedule moves next_run_at on by compare and
-- set and enqueues the task in the same transaction.
--
--   upsert_schedule   add a schedule, or change the one of that name
--   remove_schedule   delete one
--   fire_schedule     enqueue a due slot's task once, and set the next slot

-- Refuses a schedule the worker could not run, with a message that says why.
-- The time zone must be one PostgreSQL knows by its IANA name.
CREATE FUNCTION retask.check_schedule(name text, cron text, timezone text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    near text;
BEGIN
    IF name IS NULL OR name !~ '\S' THEN
        RAISE EXCEPTION 'schedule name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(name) > 200 THEN
        RAISE EXCEPTION 'schedule name is longer than 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the shape only; the worker reads the fields (and the CLI and library check them first)
    IF cron IS NULL OR btrim(cron) !~* '^(@[a-z]+|\S+(\s+\S+){4,5})$' THEN
        RAISE EXCEPTION 'cron expression "%" must have 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first',
            cron USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timezone IS NULL OR NOT EXISTS (SELECT FROM pg_timezone_names z WHERE z.name = timezone) THEN
        SELECT z.name INTO near FROM pg_timezone_names z WHERE lower(z.name) = lower(timezone) LIMIT 1;
        IF near IS NOT NULL THEN
            RAISE EXCEPTION 'unknown time zone "%"; did you mean %?', timezone, near
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'unknown time zone "%"', timezone
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an IANA time zone name, such as UTC or Europe/Moscow.';
    END IF;
END
$$;

-- Adds a schedule, or changes the one of that name (its program, cron, time
-- zone and params). `next_run_at` is the first slot, which the caller reads
-- from the cron; NULL lets the next worker read it. A change that keeps the
-- cron and time zone keeps the slot already due, so a run missed while no
-- worker ran is not lost by it.
CREATE FUNCTION retask.upsert_schedule(
    name text, program_id bigint, cron text, timezone text DEFAULT 'UTC',
    params jsonb DEFAULT '{}', next_run_at timestamptz DEFAULT NULL,
    OUT created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM retask.check_schedule(upsert_schedule.name, upsert_schedule.cron, upsert_schedule.timezone);
    IF upsert_schedule.params IS NOT NULL AND jsonb_typeof(upsert_schedule.params) <> 'object' THEN
        RAISE EXCEPTION 'params must be a JSON object, got %: %',
            jsonb_typeof(upsert_schedule.params), left(upsert_schedule.params::text, 60)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM retask.programs p WHERE p.program_id = upsert_schedule.program_id) THEN
        RAISE EXCEPTION 'program % does not exist', upsert_schedule.program_id
            USING ERRCODE = 'no_data_found', HINT = 'List the programs with retask status or empapi.get_programs().';
    END IF;

    INSERT INTO retask.schedules AS s (name, program_id, cron, timezone, params, next_run_at)
    VALUES (upsert_schedule.name, upsert_schedule.program_id, btrim(upsert_schedule.cron),
            upsert_schedule.timezone, coalesce(upsert_schedule.params, '{}'),
            upsert_schedule.next_run_at)
    ON CONFLICT (name) DO UPDATE
    SET program_id = excluded.program_id,
        cron = excluded.cron,
        timezone = excluded.timezone,
        params = excluded.params,
        next_run_at = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                           THEN coalesce(s.next_run_at, excluded.next_run_at)
                           ELSE excluded.next_run_at END
    -- xmax is 0 on a row this statement inserted, the updating transaction's id otherwise
    RETURNING s.xmax = 0 INTO upsert_schedule.created;
END
$$;

-- Deletes a schedule and returns it; an unknown name is an error. Tasks it
-- enqueued stay.
CREATE FUNCTION retask.remove_schedule(name text) RETURNS retask.schedules
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    gone retask.schedules;
BEGIN
    DELETE FROM retask.schedules s WHERE s.name = remove_schedule.name RETURNING s.* INTO gone;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule "%" does not exist', remove_schedule.name
            USING ERRCODE = 'no_data_found', HINT = 'List the schedules with retask schedule list.';
    END IF;
    RETURN gone;
END
$$;

-- Enqueues the task of schedule `name` for `slot` and makes `next_run_at` its
-- next slot, if the schedule's next slot is still `slot`; otherwise (another
-- worker fired it first, or the schedule changed) does nothing. Returns the
-- task's id, or NULL. The row lock and the compare make each slot one task
-- however many workers call this at once. The task runs after `slot`, so its
-- run_after tells which slot it is. A NULL `slot` only sets the first slot of
-- a schedule that has none.
CREATE FUNCTION retask.fire_schedule(name text, slot timestamptz, next_run_at timestamptz)
RETURNS bigint LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    sched retask.schedules;
    task bigint;
BEGIN
    IF fire_schedule.next_run_at IS NULL OR fire_schedule.next_run_at <= fire_schedule.slot THEN
        RAISE EXCEPTION 'the next run of schedule "%" must come after %', fire_schedule.name, fire_schedule.slot
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a worker that waited for this lock sees the row as the winner left it
    SELECT * INTO sched FROM retask.schedules s
    WHERE s.name = fire_schedule.name AND s.next_run_at IS NOT DISTINCT FROM fire_schedule.slot
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF fire_schedule.slot IS NOT NULL THEN
        task := retask.enqueue_task(program_id => sched.program_id, params => sched.params,
                                    run_after => fire_schedule.slot);
    END IF;
    UPDATE retask.schedules s
    SET next_run_at = fire_schedule.next_run_at,
        last_run_at = coalesce(fire_schedule.slot, s.last_run_at),
        last_task_id = coalesce(task, s.last_task_id)
    WHERE s.name = fire_schedule.name;
    RETURN task;
END
$$;
