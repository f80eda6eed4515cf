-- retask: the course application's names, a thin layer over retask's schema.
-- The course's admin tab, psql sessions and programs keep using `tasks`,
-- `programs`, register_program, take_task, complete_task, process_tasks and the
-- empapi functions exactly as before; retask's own objects are retask.*.
--
-- Each object is a section headed `-- compat: <name>` (and `needs <name>` when it
-- uses another). `retask install` creates a section only where its name is
-- free or already this layer's (marked by its comment), leaves an
-- application's own object of that name alone, and says which it skipped;
-- `install --no-compat` leaves the whole layer out. Functions here are
-- re-created on every refresh: what a course-era database granted on its
-- objects (saved in retask.saved_acl) is granted again at the end. Each object
-- is granted to the group whose work it does (sql/privileges.sql), never to
-- PUBLIC.

-- compat: public.programs
CREATE OR REPLACE VIEW public.programs AS
    SELECT p.program_id, p.name, p.func, p.max_attempts, p.retry_delay, p.retry_backoff,
           p.retry_delay_max
    FROM retask.programs p;
COMMENT ON VIEW public.programs IS 'retask compatibility layer: retask.programs';
REVOKE ALL ON public.programs FROM PUBLIC;
GRANT SELECT ON public.programs TO retask_read;

-- compat: public.tasks
-- The course's columns in its order, then retask's that a person reads.
CREATE OR REPLACE VIEW public.tasks AS
    SELECT t.task_id, t.program_id, t.status, t.params, t.pid, t.started, t.finished, t.result,
           t.host, t.port, t.attempt_count, t.max_attempts, t.run_after
    FROM retask.tasks t;
COMMENT ON VIEW public.tasks IS 'retask compatibility layer: retask.tasks';
REVOKE ALL ON public.tasks FROM PUBLIC;
GRANT SELECT ON public.tasks TO retask_read;

-- compat: public.register_program
-- `path`: the caller's search_path, where the function name is looked up.
CREATE FUNCTION public.register_program(
    name text, func text, path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS bigint LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT u.program_id FROM retask.upsert_program(name, func, path => path) u
$$;
COMMENT ON FUNCTION public.register_program(text, text, text) IS 'retask compatibility layer: retask.upsert_program';
REVOKE ALL ON FUNCTION public.register_program(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.register_program(text, text, text) TO retask_register;

-- compat: public.take_task needs public.tasks
-- The course's single take: local tasks only, since the in-database worker
-- cannot reach another host.
CREATE FUNCTION public.take_task(OUT task public.tasks) LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT ROW(t.task_id, t.program_id, t.status, t.params, t.pid, t.started, t.finished, t.result,
               t.host, t.port, t.attempt_count, t.max_attempts, t.run_after)::public.tasks
    FROM retask.take_tasks(1, 'process_tasks', NULL, false) t
$$;
COMMENT ON FUNCTION public.take_task() IS 'retask compatibility layer: retask.take_tasks';
REVOKE ALL ON FUNCTION public.take_task() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.take_task() TO retask_worker;

-- compat: public.complete_task needs public.tasks
-- The course's completion, 'finished' or 'error', for the attempt the task row
-- carries. An error goes through the retry rule like any failure.
CREATE FUNCTION public.complete_task(task public.tasks, status text, result text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF complete_task.status NOT IN ('finished', 'error') THEN
        RAISE EXCEPTION 'a task completes as finished or error, not %', complete_task.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a completion of an attempt the task no longer runs (it was rescued) must
    -- not commit the caller's effects as if it had counted
    IF NOT EXISTS (SELECT FROM retask.record_attempts(
            ARRAY[task.task_id], ARRAY[task.attempt_count], ARRAY[complete_task.status],
            results => ARRAY[CASE WHEN complete_task.status = 'finished' THEN result END],
            errors => ARRAY[CASE WHEN complete_task.status = 'error' THEN result END])) THEN
        RAISE EXCEPTION 'attempt % of task % is not running any more', task.attempt_count, task.task_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It was rescued as lost and retried; its result was not recorded.';
    END IF;
END
$$;
COMMENT ON FUNCTION public.complete_task(public.tasks, text, text) IS 'retask compatibility layer: retask.record_attempts';
REVOKE ALL ON FUNCTION public.complete_task(public.tasks, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.complete_task(public.tasks, text, text) TO retask_worker;

-- compat: public.process_tasks
CREATE PROCEDURE public.process_tasks(idle interval DEFAULT '1 second')
LANGUAGE plpgsql AS $$
BEGIN
    CALL retask.process_tasks(idle);
END
$$;
COMMENT ON PROCEDURE public.process_tasks(interval) IS 'retask compatibility layer: retask.process_tasks';
REVOKE ALL ON PROCEDURE public.process_tasks(interval) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE public.process_tasks(interval) TO retask_worker;

-- compat: empapi.run needs public.tasks
-- Runs with its caller's rights, as the course's did, and under the caller's
-- search_path (no path of its own: run_program's default takes the caller's).
CREATE FUNCTION empapi.run(task public.tasks) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT retask.run_program(task.program_id, task.params)
$$;
COMMENT ON FUNCTION empapi.run(public.tasks) IS 'retask compatibility layer: retask.run_program';
REVOKE ALL ON FUNCTION empapi.run(public.tasks) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.run(public.tasks) TO retask_worker;

-- compat: empapi.run_program
CREATE FUNCTION empapi.run_program(program_id bigint, params jsonb,
                                   host text DEFAULT NULL, port text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT retask.enqueue_task(program_id, params, host, port)
$$;
COMMENT ON FUNCTION empapi.run_program(bigint, jsonb, text, text) IS 'retask compatibility layer: retask.enqueue_task';
REVOKE ALL ON FUNCTION empapi.run_program(bigint, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.run_program(bigint, jsonb, text, text) TO retask_enqueue;

-- compat: empapi.get_programs
CREATE FUNCTION empapi.get_programs()
RETURNS TABLE (program_id bigint, name text, func text, max_attempts integer,
               retry_delay interval, retry_backoff text, retry_delay_max interval)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.program_id, p.name, p.func, p.max_attempts, p.retry_delay, p.retry_backoff, p.retry_delay_max
    FROM retask.programs p ORDER BY p.program_id
$$;
COMMENT ON FUNCTION empapi.get_programs() IS 'retask compatibility layer: retask.programs';
REVOKE ALL ON FUNCTION empapi.get_programs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.get_programs() TO retask_read;

-- compat: empapi.get_tasks
-- The course application's columns first, in its order; retask's after them.
CREATE FUNCTION empapi.get_tasks()
RETURNS TABLE (task_id bigint, name text, status text, params jsonb, started timestamptz,
               finished timestamptz, program_id bigint, attempt_count integer,
               max_attempts integer, run_after timestamptz, host text, port text, result text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.task_id, p.name, t.status, t.params, t.started, t.finished,
           t.program_id, t.attempt_count, t.max_attempts, t.run_after, t.host, t.port, t.result
    FROM retask.tasks t LEFT JOIN retask.programs p ON p.program_id = t.program_id
    ORDER BY t.task_id
$$;
COMMENT ON FUNCTION empapi.get_tasks() IS 'retask compatibility layer: retask.tasks';
REVOKE ALL ON FUNCTION empapi.get_tasks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.get_tasks() TO retask_read;

-- compat: empapi.task_results
CREATE FUNCTION empapi.task_results(task_id bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.result FROM retask.tasks t WHERE t.task_id = task_results.task_id
$$;
COMMENT ON FUNCTION empapi.task_results(bigint) IS 'retask compatibility layer: retask.tasks';
REVOKE ALL ON FUNCTION empapi.task_results(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.task_results(bigint) TO retask_read;

-- compat: empapi.task_attempts
-- Every ended attempt of a task, first to last: what a person checks to see
-- that a task needed more than one try and what each try did.
CREATE FUNCTION empapi.task_attempts(task_id bigint)
RETURNS TABLE (attempt integer, outcome text, started timestamptz, finished timestamptz,
               error text, context text, pid integer, worker text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.attempt, a.outcome, a.started, a.finished, a.error, a.context, a.pid, a.worker
    FROM retask.task_attempts a WHERE a.task_id = task_attempts.task_id
    ORDER BY a.attempt
$$;
COMMENT ON FUNCTION empapi.task_attempts(bigint) IS 'retask compatibility layer: retask.task_attempts';
REVOKE ALL ON FUNCTION empapi.task_attempts(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION empapi.task_attempts(bigint) TO retask_read;
