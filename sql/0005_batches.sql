-- retask 0005: a batch of tasks in one statement. The worker used to send one
-- attempt_task statement per task and a complete_tasks statement after them;
-- run_tasks does the whole batch server-side: lock, run each program under its
-- own savepoint, record every outcome. A statement per batch, not per task,
-- takes the per-statement cost off both the worker and the server.
--
-- take_tasks and finish_tasks move to PL/pgSQL with the same bodies: a SQL
-- function that cannot be inlined is parsed and planned on every call, while
-- PL/pgSQL keeps its plans for the session (measured on a take of 50: about
-- 4 ms as SQL, 1.3 ms as PL/pgSQL).

-- run_tasks replaces the worker's per-task statement.
DROP FUNCTION attempt_task(bigint);

-- Every attempt updates its task twice (take, then finish or fail), and no
-- update of a task is HOT (its status is in the partial indexes' predicates),
-- so each index on tasks costs two insertions per attempt. Nothing on the hot
-- path reads this one: `retask status` counts over the whole table anyway, and
-- deleting a program (which retask never does) scans tasks once. Dropping it
-- took draining 60,000 no-op tasks from 8,954-9,157/s to 9,789-10,349/s.
DROP INDEX IF EXISTS tasks_program_id_idx;

CREATE OR REPLACE FUNCTION take_tasks(
    max_tasks integer, worker text DEFAULT NULL, lease interval DEFAULT NULL,
    remote boolean DEFAULT true)
RETURNS SETOF tasks LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    UPDATE tasks t
    SET status = 'running',
        attempt_count = t.attempt_count + 1,
        started = now(),
        finished = NULL,
        pid = pg_backend_pid(),
        worker = take_tasks.worker,
        lease_expires_at = now() + take_tasks.lease
    FROM (
        SELECT s.task_id FROM tasks s
        WHERE s.status = 'scheduled' AND s.run_after <= now()
          AND (take_tasks.remote OR s.host IS NULL)
        ORDER BY s.run_after, s.task_id
        LIMIT take_tasks.max_tasks
        FOR UPDATE SKIP LOCKED
    ) picked
    WHERE t.task_id = picked.task_id
    RETURNING t.*;
END
$$;

CREATE OR REPLACE FUNCTION finish_tasks(
    task_ids bigint[], attempts integer[], results text[],
    started_at timestamptz[] DEFAULT NULL, finished_at timestamptz[] DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    WITH done AS (
        UPDATE tasks t
        SET status = 'finished',
            started = coalesce(u.started_at, t.started),
            finished = coalesce(u.finished_at, clock_timestamp()),
            lease_expires_at = NULL,
            result = format('attempt %s of %s', t.attempt_count, t.max_attempts)
                     || E'\n' || coalesce(u.result, '')
        FROM unnest(finish_tasks.task_ids, finish_tasks.attempts, finish_tasks.results,
                    finish_tasks.started_at, finish_tasks.finished_at)
             AS u(task_id, attempt, result, started_at, finished_at)
        WHERE t.task_id = u.task_id
          AND t.status = 'running' AND t.attempt_count = u.attempt
        RETURNING t.*
    ), logged AS (
        INSERT INTO task_attempts (task_id, attempt, started, finished, outcome, pid, worker)
        SELECT d.task_id, d.attempt_count, d.started, d.finished, 'finished', d.pid, d.worker
        FROM done d
    )
    SELECT d.task_id FROM done d;
END
$$;

-- Runs attempt attempts[i] of task task_ids[i], for every i, and records how
-- each ended (complete_tasks), all in the caller's statement: the programs'
-- effects and their completions commit together. Each program runs under a
-- savepoint, so a failure undoes only its own effects. One row per task, in
-- task_id order; `state` says what became of it:
--   'ran'       the attempt ended and is recorded; `status` is the task's status
--               after it (NULL: the task was taken from the caller meanwhile),
--               `error` NULL for a finished attempt;
--   'not held'  the task is not running that attempt (it was rescued): not run;
--   'cancelled' a cancel request stopped its program; nothing is recorded for
--               it, `error` says why, and the tasks after it are 'unrun';
--   'unrun'     not started, nothing recorded: run it again in a new statement.
-- `timeout_ms` is the caller's statement_timeout (0: none): each task must get
-- all of it. A statement timeout raised in the statement's first program is
-- that attempt's failure ("timed out after ..."), and the tasks after it come
-- back 'unrun' (the timer is spent). Raised in a later program, it cut short a
-- task that had not had its full time: that task and the rest come back
-- 'unrun'. The caller runs 'unrun' tasks again in a new statement.
CREATE FUNCTION run_tasks(task_ids bigint[], attempts integer[], timeout_ms integer DEFAULT 0)
RETURNS TABLE (task_id bigint, state text, status text, error text, duration_ms double precision)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    task tasks;
    n integer := 0;
    -- per task run, in task_id order
    ids bigint[] := '{}';
    statuses text[] := '{}';
    errors text[] := '{}';
    took double precision[] := '{}';
    -- the finished ones, recorded together at the end
    done integer := 0;
    done_ids bigint[] := '{}';
    done_tries integer[] := '{}';
    done_results text[] := '{}';
    done_starts timestamptz[] := '{}';
    done_ends timestamptz[] := '{}';
    began timestamptz;
    ended timestamptz;
    res text;
    err text;
    ctx text;
    code text;
    cut_at bigint;
    cut_state text;
    cut_error text;
BEGIN
    IF coalesce(cardinality(task_ids), 0) <> coalesce(cardinality(attempts), 0) THEN
        RAISE EXCEPTION 'run_tasks needs as many attempts as task_ids'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR task IN
        SELECT * FROM tasks t
        WHERE t.status = 'running'
          AND (t.task_id, t.attempt_count) IN (SELECT * FROM unnest(task_ids, attempts))
        ORDER BY t.task_id
        FOR UPDATE
    LOOP
        began := clock_timestamp();
        err := NULL;
        code := NULL;
        BEGIN
            res := empapi.run(task);
        EXCEPTION
            WHEN others OR query_canceled THEN
                GET STACKED DIAGNOSTICS err := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT,
                                        code := RETURNED_SQLSTATE;
        END;
        ended := clock_timestamp();
        IF code = '57014' THEN
            IF timeout_ms > 0
               -- the timer starts a little before statement_timestamp(): a cancel
               -- this late is the timeout, not a request
               AND ended - statement_timestamp() >= timeout_ms * interval '0.9 millisecond' THEN
                IF n > 0 THEN
                    cut_at := task.task_id;
                    cut_state := 'unrun';
                    EXIT;
                END IF;
                err := format('timed out after %s ms', timeout_ms);
                -- the timer is spent: the tasks after this one need a statement of their own
                cut_at := task.task_id;
                cut_state := 'ran';
            ELSE
                cut_at := task.task_id;
                cut_state := 'cancelled';
                cut_error := err;
                EXIT;
            END IF;
        END IF;
        n := n + 1;
        ids[n] := task.task_id;
        errors[n] := err;
        took[n] := extract(epoch FROM ended - began) * 1000;
        IF err IS NULL THEN
            done := done + 1;
            done_ids[done] := task.task_id;
            done_tries[done] := task.attempt_count;
            done_results[done] := res;
            done_starts[done] := began;
            done_ends[done] := ended;
            statuses[n] := 'finished';
        ELSE
            statuses[n] := fail_task(task.task_id, task.attempt_count, err,
                                     program_error_context(ctx), 'error', began, ended);
        END IF;
        EXIT WHEN cut_at IS NOT NULL;
    END LOOP;
    -- every row is locked by this statement: each of them finishes
    PERFORM finish_tasks(done_ids, done_tries, done_results, done_starts, done_ends);
    RETURN QUERY
    SELECT u.task_id,
           CASE WHEN r.i IS NOT NULL THEN 'ran'
                WHEN u.task_id = cut_at THEN cut_state
                WHEN u.task_id > cut_at THEN 'unrun'
                ELSE 'not held' END,
           statuses[r.i],
           CASE WHEN r.i IS NOT NULL THEN errors[r.i] WHEN u.task_id = cut_at THEN cut_error END,
           took[r.i]
    FROM unnest(task_ids) AS u(task_id)
    LEFT JOIN unnest(ids) WITH ORDINALITY AS r(task_id, i) ON r.task_id = u.task_id
    ORDER BY u.task_id;
END
$$;

-- empapi.run as in 0004, but a program's function is looked up by name only
-- when the session has no query for it yet, or the function it was built for is
-- gone, renamed or moved (a function dropped and created again has a new oid).
-- The session's query is kept per program: {func, oid, name, schema oid,
-- column names, query}.
CREATE OR REPLACE FUNCTION empapi.run(task tasks) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    func text;
    fn regprocedure;
    names text[];
    plan text[];
    cells text[];
BEGIN
    SELECT p.func INTO func FROM programs p WHERE p.program_id = task.program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'program % does not exist', task.program_id USING ERRCODE = 'no_data_found';
    END IF;
    plan := nullif(current_setting('retask.run_' || task.program_id, true), '')::text[];
    IF plan IS NULL OR plan[1] IS DISTINCT FROM func OR NOT EXISTS (
        SELECT FROM pg_proc p
        WHERE p.oid = plan[2]::oid AND p.proname = plan[3] AND p.pronamespace = plan[4]::oid)
    THEN
        fn := program_function(func);
        names := program_columns(fn);
        -- positional aliases c1..cn, so no column name is ever spliced into SQL
        SELECT ARRAY[func, p.oid::text, p.proname::text, p.pronamespace::text, names::text,
                     format('SELECT array_agg(ARRAY[%s]) FROM %I.%I($1) AS r(%s)',
                            string_agg('r.c' || i || '::text', ', '), n.nspname, p.proname,
                            string_agg('c' || i, ', '))]
        INTO plan
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             generate_series(1, cardinality(names)) i
        WHERE p.oid = fn
        GROUP BY p.oid, n.nspname, p.proname, p.pronamespace;
        -- as an array literal, which quotes whatever the names hold
        PERFORM set_config('retask.run_' || task.program_id, plan::text, false);
    END IF;
    EXECUTE plan[6] INTO cells USING task.params;
    RETURN render_table(plan[5]::text[], cells);
END
$$;
