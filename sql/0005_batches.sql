-- retask 0005: a batch of tasks in one statement. The worker used to send one
-- attempt_task statement per task and a complete_tasks statement after them;
-- run_tasks does the whole batch server-side: lock, run each program under its
-- own savepoint, record every outcome. A statement per batch, not per task,
-- takes the per-statement cost off both the worker and the server.
--
-- attempt_task stays: a worker of the previous version, still running when
-- this is installed, calls it until it stops.
--
-- take_tasks and finish_tasks move to PL/pgSQL with the same bodies: a SQL
-- function that cannot be inlined is parsed and planned on every call, while
-- PL/pgSQL keeps its plans for the session (measured on a take of 50: about
-- 4 ms as SQL, 1.3 ms as PL/pgSQL).

-- Every attempt updates its task twice (take, then finish or fail), and no
-- update of a task is HOT (its status is in the partial indexes' predicates),
-- so each index on tasks costs two insertions per attempt. Nothing on the hot
-- path reads this one. `retask status` counts over the whole table without
-- --program; with it, it now does the same. Deleting a program (which retask
-- never does) scans tasks once. Dropping it took draining 60,000 no-op tasks
-- from 8,954-9,157/s to 9,789-10,349/s.
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
        WHERE t.task_id = u.task_id AND t.task_id = ANY (finish_tasks.task_ids)
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

-- Ends many attempts as failed in one statement, as fail_task (0003) did one
-- at a time: back to 'scheduled' after the retry delay while attempts are left,
-- else 'error'; `outcomes[i]` is 'error' or 'lost'. Returns each task's new
-- status; a task not running the given attempt any more is left alone and not
-- returned. fail_task is now its single-task case, so failing has one
-- implementation, as finishing has in finish_tasks.
CREATE FUNCTION fail_tasks(
    task_ids bigint[], attempts integer[], errors text[], contexts text[] DEFAULT NULL,
    outcomes text[] DEFAULT NULL, started_at timestamptz[] DEFAULT NULL,
    finished_at timestamptz[] DEFAULT NULL)
RETURNS TABLE (task_id bigint, status text) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    ends text[];
    wake boolean;
BEGIN
    WITH failed AS (
        UPDATE tasks t
        SET status = CASE WHEN t.attempt_count < t.max_attempts THEN 'scheduled' ELSE 'error' END,
            started = coalesce(u.started_at, t.started),
            finished = coalesce(u.finished_at, clock_timestamp()),
            lease_expires_at = NULL,
            run_after = CASE WHEN t.attempt_count < t.max_attempts
                             THEN clock_timestamp()
                                  + retry_delay_after(t.attempt_count, t.retry_backoff, t.retry_delay, t.retry_delay_max)
                             ELSE t.run_after END,
            result = format('attempt %s of %s', t.attempt_count, t.max_attempts)
                     || E'\n' || coalesce(u.error, 'unknown error')
                     || coalesce(E'\n' || nullif(u.context, ''), '')
        FROM unnest(fail_tasks.task_ids, fail_tasks.attempts, fail_tasks.errors,
                    fail_tasks.contexts, fail_tasks.outcomes, fail_tasks.started_at,
                    fail_tasks.finished_at)
             AS u(task_id, attempt, error, context, outcome, started_at, finished_at)
        WHERE t.task_id = u.task_id AND t.task_id = ANY (fail_tasks.task_ids)
          AND t.status = 'running' AND t.attempt_count = u.attempt
        RETURNING t.*, u.error, u.context, coalesce(u.outcome, 'error') AS outcome
    ), logged AS (
        INSERT INTO task_attempts (task_id, attempt, started, finished, outcome, error, context, pid, worker)
        SELECT f.task_id, f.attempt_count, f.started, f.finished, f.outcome, f.error,
               nullif(f.context, ''), f.pid, f.worker
        FROM failed f
    )
    SELECT array_agg(f.task_id), array_agg(f.status),
           coalesce(bool_or(f.status = 'scheduled' AND f.run_after <= clock_timestamp()), false)
    INTO ids, ends, wake
    FROM failed f;
    IF wake THEN
        PERFORM pg_notify('retask_tasks', '');
    END IF;
    RETURN QUERY SELECT * FROM unnest(ids, ends);
END
$$;

CREATE OR REPLACE FUNCTION fail_task(
    task_id bigint, attempt integer, error text, context text DEFAULT NULL,
    outcome text DEFAULT 'error', started_at timestamptz DEFAULT NULL,
    finished_at timestamptz DEFAULT NULL)
RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT f.status
    FROM fail_tasks(ARRAY[fail_task.task_id], ARRAY[fail_task.attempt], ARRAY[fail_task.error],
                    ARRAY[fail_task.context], ARRAY[fail_task.outcome],
                    ARRAY[fail_task.started_at], ARRAY[fail_task.finished_at]) f
$$;

-- Runs attempt attempts[i] of task task_ids[i], for every i, and records how
-- each ended, all in the caller's statement: the programs' effects and their
-- completions commit together. Every row is locked before any program runs;
-- each program runs under a savepoint, so a failure undoes only its own
-- effects. One row per task, in task_id order; `state` says what became of it:
--   'ran'       the attempt ended and is recorded; `status` is the task's status
--               after it, `error` NULL for a finished attempt;
--   'not held'  the task is not running that attempt (it was rescued): not run;
--   'cancelled' a cancel request or the statement timeout stopped its program.
--               Nothing is recorded for it: the caller records it (as failed,
--               or as lost if it was stopping), with `error` ("timed out after
--               ..." for the timeout) and `context`;
--   'unrun'     not started, or stopped before it had its full time; nothing
--               recorded: run it again in a new statement.
-- The session's statement_timeout is the per-task timeout, and every task must
-- get all of it. Raised in the statement's first program, it is that task's
-- timeout ('cancelled'), and the rest come back 'unrun' (the timer is spent).
-- Raised in a later program, it cut short a task that had not had its full
-- time: that task and the rest come back 'unrun'.
CREATE FUNCTION run_tasks(task_ids bigint[], attempts integer[])
RETURNS TABLE (task_id bigint, state text, status text, error text, context text,
               duration_ms double precision)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    timeout interval := current_setting('statement_timeout')::interval;
    held tasks[];
    task tasks;
    n integer := 0;
    -- per task run, in task_id order
    ids bigint[] := '{}';
    statuses text[] := '{}';
    errors text[] := '{}';
    took double precision[] := '{}';
    -- the finished ones and the failed ones, each recorded together at the end
    done integer := 0;
    done_ids bigint[] := '{}';
    done_tries integer[] := '{}';
    done_results text[] := '{}';
    done_starts timestamptz[] := '{}';
    done_ends timestamptz[] := '{}';
    bad integer := 0;
    bad_ids bigint[] := '{}';
    bad_tries integer[] := '{}';
    bad_errors text[] := '{}';
    bad_contexts text[] := '{}';
    bad_starts timestamptz[] := '{}';
    bad_ends timestamptz[] := '{}';
    began timestamptz;
    ended timestamptz;
    res text;
    err text;
    ctx text;
    code text;
    cut_at bigint;
    cut_state text;
    cut_error text;
    cut_context text;
BEGIN
    IF coalesce(cardinality(task_ids), 0) <> coalesce(cardinality(attempts), 0) THEN
        RAISE EXCEPTION 'run_tasks needs as many attempts as task_ids'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    held := ARRAY(
        SELECT t FROM tasks t
        -- by id (primary key), not by scanning every running task of every worker
        WHERE t.task_id = ANY (task_ids) AND t.status = 'running'
          AND (t.task_id, t.attempt_count) IN (SELECT * FROM unnest(task_ids, attempts))
        ORDER BY t.task_id
        FOR UPDATE);
    FOREACH task IN ARRAY held LOOP
        -- a program that caught the timeout's cancel itself spent the timer:
        -- the rest need a statement of their own
        IF n > 0 AND timeout > '0' AND clock_timestamp() - statement_timestamp() >= timeout THEN
            cut_at := task.task_id;
            cut_state := 'unrun';
            EXIT;
        END IF;
        began := clock_timestamp();
        err := NULL;
        code := NULL;
        BEGIN
            res := empapi.run(task);
        EXCEPTION
            -- OTHERS leaves out the cancel and a failed ASSERT
            WHEN others OR query_canceled OR assert_failure THEN
                GET STACKED DIAGNOSTICS err := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT,
                                        code := RETURNED_SQLSTATE;
        END;
        ended := clock_timestamp();
        IF code = '57014' THEN
            cut_at := task.task_id;
            -- the timer starts a little before statement_timestamp(): a cancel
            -- this late is the timeout, not a request
            IF timeout > '0' AND ended - statement_timestamp() >= timeout * 0.9 THEN
                IF n > 0 THEN
                    cut_state := 'unrun';
                    EXIT;
                END IF;
                err := format('timed out after %s ms', (extract(epoch FROM timeout) * 1000)::bigint);
            END IF;
            cut_state := 'cancelled';
            cut_error := err;
            cut_context := program_error_context(ctx);
            EXIT;
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
        ELSE
            bad := bad + 1;
            bad_ids[bad] := task.task_id;
            bad_tries[bad] := task.attempt_count;
            bad_errors[bad] := err;
            bad_contexts[bad] := program_error_context(ctx);
            bad_starts[bad] := began;
            bad_ends[bad] := ended;
        END IF;
    END LOOP;
    -- every row is locked by this statement: each of them is recorded
    PERFORM finish_tasks(done_ids, done_tries, done_results, done_starts, done_ends);
    statuses := ARRAY(
        SELECT coalesce(f.status, 'finished')
        FROM unnest(ids) WITH ORDINALITY AS r(task_id, i)
        LEFT JOIN fail_tasks(bad_ids, bad_tries, bad_errors, bad_contexts, NULL,
                             bad_starts, bad_ends) f ON f.task_id = r.task_id
        ORDER BY r.i);
    -- the ones left to the caller were held here without their leases renewed
    -- (renewal skips locked rows): the time this statement took does not count
    IF cut_at IS NOT NULL THEN
        UPDATE tasks t
        SET lease_expires_at = t.lease_expires_at + (clock_timestamp() - statement_timestamp())
        WHERE t.task_id = ANY (ARRAY(SELECT (h).task_id FROM unnest(held) h
                                     WHERE (h).task_id >= cut_at))
          AND t.lease_expires_at IS NOT NULL;
    END IF;
    RETURN QUERY
    SELECT u.task_id,
           CASE WHEN r.i IS NOT NULL THEN 'ran'
                WHEN u.task_id = cut_at THEN cut_state
                WHEN u.task_id > cut_at THEN 'unrun'
                ELSE 'not held' END,
           statuses[r.i],
           CASE WHEN r.i IS NOT NULL THEN errors[r.i] WHEN u.task_id = cut_at THEN cut_error END,
           CASE WHEN u.task_id = cut_at THEN cut_context END,
           coalesce(took[r.i], CASE WHEN u.task_id = cut_at
                                    THEN extract(epoch FROM ended - began) * 1000 END)
    FROM unnest(task_ids) AS u(task_id)
    LEFT JOIN unnest(ids) WITH ORDINALITY AS r(task_id, i) ON r.task_id = u.task_id
    ORDER BY u.task_id;
END
$$;

-- empapi.run as in 0004, but without resolving the program's function through
-- program_function on every run. The function is still looked up by name each
-- time (to_regprocedure, cheap); what the session keeps, per program, is what
-- that lookup last gave and the result's column names: {func, oid, names,
-- relid}. A session can write that setting itself, so nothing taken from it is
-- trusted as SQL: the function called is always the one `func` resolves to now,
-- and the query is built from its oid on every run. A forged entry can at most
-- misname the columns of that session's own results. `relid` is the relation of
-- a composite result, whose columns can change under the same function (ALTER
-- TABLE/TYPE): its names are read again on every run.
CREATE OR REPLACE FUNCTION empapi.run(task tasks) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    func text;
    fn regprocedure;
    cache text[];
    names text[];
    relid oid := 0;
    cols text := '';
    aliases text := '';
    cells text[];
BEGIN
    SELECT p.func INTO func FROM programs p WHERE p.program_id = task.program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'program % does not exist', task.program_id USING ERRCODE = 'no_data_found';
    END IF;
    cache := nullif(current_setting('retask.run_' || task.program_id, true), '')::text[];
    IF cache[1] = func THEN
        -- the two readings program_function tries, first as one identifier
        IF func !~ '[."]' THEN
            fn := to_regprocedure(quote_ident(func) || '(jsonb)');
        END IF;
        fn := coalesce(fn, to_regprocedure(func || '(jsonb)'));
    END IF;
    IF fn IS NOT NULL AND fn::oid = cache[2]::oid THEN
        names := cache[3]::text[];
        relid := cache[4]::oid;
    ELSE
        fn := program_function(func);
        names := program_columns(fn);
        SELECT ty.typrelid INTO relid
        FROM pg_proc p JOIN pg_type ty ON ty.oid = p.prorettype
        WHERE p.oid = fn AND p.proallargtypes IS NULL;
        relid := coalesce(relid, 0);
        PERFORM set_config('retask.run_' || task.program_id,
                           ARRAY[func, fn::oid::text, names::text, relid::text]::text, false);
    END IF;
    IF relid <> 0 THEN
        names := ARRAY(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY a.attnum);
    END IF;
    -- positional aliases c1..cn, so no column name is ever spliced into SQL
    FOR i IN 1 .. cardinality(names) LOOP
        cols := cols || CASE WHEN i > 1 THEN ', ' ELSE '' END || 'r.c' || i || '::text';
        aliases := aliases || CASE WHEN i > 1 THEN ', ' ELSE '' END || 'c' || i;
    END LOOP;
    -- fn::regproc prints the name as it resolves under this search_path, quoted
    EXECUTE format('SELECT array_agg(ARRAY[%s]) FROM %s($1) AS r(%s)', cols, fn::regproc, aliases)
        INTO cells USING task.params;
    RETURN render_table(names, cells);
END
$$;

-- process_tasks as in 0004, but a failed ASSERT in a program (which OTHERS does
-- not catch) fails its task like any error instead of stopping the loop with the
-- task left running.
CREATE OR REPLACE PROCEDURE process_tasks(idle interval DEFAULT '1 second')
LANGUAGE plpgsql AS $$
DECLARE
    task tasks;
    result text;
    msg text;
    ctx text;
    last_rescue timestamptz;
    cancelled boolean := false;
BEGIN
    SET application_name = 'process_tasks';
    <<forever>>
    LOOP
        IF last_rescue IS NULL OR clock_timestamp() - last_rescue > interval '10 seconds' THEN
            PERFORM rescue_lost_tasks();
            last_rescue := clock_timestamp();
        END IF;
        SELECT * INTO task FROM take_task();
        COMMIT;
        IF task.task_id IS NULL THEN
            PERFORM pg_sleep(extract(epoch FROM idle));
            CONTINUE forever;
        END IF;

        BEGIN
            result := empapi.run(task);
            IF finish_task(task.task_id, task.attempt_count, result) IS NULL THEN
                RAISE EXCEPTION 'attempt % of task % was taken from this worker',
                    task.attempt_count, task.task_id;
            END IF;
        EXCEPTION
            WHEN others OR assert_failure THEN
                GET STACKED DIAGNOSTICS msg := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT;
                PERFORM fail_task(task.task_id, task.attempt_count, msg, program_error_context(ctx));
            WHEN query_canceled THEN
                -- pg_cancel_backend (or a statement timeout) stops the worker; the
                -- session lives on, so its task would never look abandoned: end the
                -- attempt as lost before stopping
                PERFORM fail_task(task.task_id, task.attempt_count,
                                  'process_tasks was cancelled during the task', NULL, 'lost');
                cancelled := true;
        END;
        COMMIT;
        IF cancelled THEN
            RAISE EXCEPTION 'canceling statement due to user request' USING ERRCODE = 'query_canceled';
        END IF;
    END LOOP;
END
$$;
