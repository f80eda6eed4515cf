-- retask: running programs inside the database. run_program runs one and
-- renders its result as the course's text table (render.sql); run_held runs a
-- whole batch in one statement, taken before (run_tasks, the worker's careful
-- path) or in the same statement (run_next_tasks, its fast path); process_tasks is the
-- course's in-database worker loop. All record through record_attempts
-- (state_machine.sql). PL/pgSQL only: stock PostgreSQL (and managed services)
-- have no PL/Python.

-- Runs program `program_id` with `params` and renders what it returned. The
-- program runs with the caller's rights and under `path`, by default the
-- caller's own search_path (a default is evaluated before this function's
-- pinned path applies): the course's programs name their tables unqualified. The function is looked up by name on every run (cheap); what
-- the session keeps, per program, is what that lookup last gave and the
-- result's column names: {func, oid, names, relid}. A session can write that
-- setting itself, so nothing taken from it is trusted as SQL: the function
-- called is always the one `func` resolves to now, and the query is built from
-- its oid on every run. `relid` is the relation of a composite result, whose
-- columns can change under the same function: its names are read every run.
CREATE FUNCTION retask.run_program(
    program_id bigint, params jsonb, path text DEFAULT pg_catalog.current_setting('search_path'),
    max_result_bytes integer DEFAULT 1048576)
RETURNS text LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    func text;
    fn regprocedure;
    cache text[];
    names text[];
    relid oid := 0;
    cols text := '';
    aliases text := '';
    query text;
    cells text[];
BEGIN
    SELECT p.func INTO func FROM retask.programs p WHERE p.program_id = run_program.program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'program % does not exist', run_program.program_id USING ERRCODE = 'no_data_found';
    END IF;
    cache := nullif(current_setting('retask.run_' || run_program.program_id, true), '')::text[];
    -- a session can write the setting itself: what is not in the shape this
    -- function writes is not used, and the name is checked before a run below
    IF cache[1] = func AND cache[2] ~ '^[0-9]+$' AND cache[3] LIKE '{%}' AND cache[4] ~ '^[0-9]+$' THEN
        fn := cache[2]::oid;
        names := cache[3]::text[];
        relid := cache[4]::oid;
    END IF;
    -- twice at most: with what the session kept, then (on its first run of this
    -- program, or once the name means another function) with a fresh lookup
    FOR try IN 1 .. 2 LOOP
        IF fn IS NOT NULL THEN
            IF relid <> 0 THEN
                names := ARRAY(SELECT a.attname::text FROM pg_attribute a
                               WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped
                               ORDER BY a.attnum);
            END IF;
            -- positional aliases c1..cn, so no column name is ever spliced into
            -- SQL; fn::regproc prints the name schema-qualified here (no user
            -- schema is on this function's path), quoted where needed
            cols := '';
            aliases := '';
            FOR i IN 1 .. cardinality(names) LOOP
                cols := cols || CASE WHEN i > 1 THEN ', ' ELSE '' END || 'r.c' || i || '::pg_catalog.text';
                aliases := aliases || CASE WHEN i > 1 THEN ', ' ELSE '' END || 'c' || i;
            END LOOP;
            query := format('SELECT pg_catalog.array_agg(ARRAY[%s]) FROM %s($1) AS r(%s)',
                            cols, fn::regproc, aliases);
            -- the program's path from here until it has run: the name must still
            -- mean this function there, and the program sees that path
            PERFORM pg_catalog.set_config('search_path', path, true);
            IF retask.lookup_function(func) OPERATOR(pg_catalog.=) fn THEN
                EXECUTE query INTO cells USING params;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                RETURN retask.render_table(names, cells, max_result_bytes);
            END IF;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        END IF;
        -- stored names are schema-qualified; a course-era one that is not
        -- resolves under the caller's path
        fn := retask.program_function(func, path);
        names := retask.program_columns(fn);
        SELECT ty.typrelid INTO relid
        FROM pg_proc p JOIN pg_type ty ON ty.oid = p.prorettype
        WHERE p.oid = fn AND p.proallargtypes IS NULL;
        relid := coalesce(relid, 0);
        PERFORM set_config('retask.run_' || run_program.program_id,
                           ARRAY[func, fn::oid::text, names::text, relid::text]::text, false);
    END LOOP;
    RAISE EXCEPTION 'the function of program % changed while it was looked up', run_program.program_id;
END
$$;

-- What a program may leave in its session for the next one, undone: settings
-- (SET, set_config), a role it set, session advisory locks, prepared
-- statements, temporary objects and LISTENs. A task starts from what a new
-- session of the worker's role would have, whatever ran before it on the same
-- connection (run_tasks and process_tasks call this after every program).
-- RESET ALL comes last: it also resets this function's pinned search_path,
-- which its caller pins again. About 5 µs.
CREATE FUNCTION retask.reset_session() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- first: a cursor left open on a temporary table would stop DISCARD TEMP
    EXECUTE 'CLOSE ALL';
    RESET SESSION AUTHORIZATION;
    RESET ROLE;
    PERFORM retask.reset_after_rollback();
    IF pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 THEN
        DISCARD TEMP;
    END IF;
    UNLISTEN *;
    RESET ALL;
END
$$;

-- What the rollback of a failed program's savepoint leaves of it: session
-- advisory locks and prepared statements (SQL PREPARE). Its settings, role,
-- temporary objects, cursors and LISTENs went with the rollback. Cheaper than
-- reset_session, and it cannot fail: a failed program needs nothing else.
CREATE FUNCTION retask.reset_after_rollback() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    statement_ text;
BEGIN
    PERFORM pg_catalog.pg_advisory_unlock_all();
    -- the driver's own statements are not from SQL, and stay
    FOR statement_ IN SELECT s.name FROM pg_catalog.pg_prepared_statements s WHERE s.from_sql LOOP
        EXECUTE pg_catalog.format('DEALLOCATE %I', statement_);
    END LOOP;
END
$$;

-- Runs the tasks `held`, locked by the caller, and records how each ended,
-- all in the caller's statement: the programs' effects and their endings
-- commit together. Each program runs under a savepoint, so a failure undoes
-- only its own effects. Programs run under `path`, the caller's search_path
-- (see run_program). Two callers: run_tasks runs attempts taken before (the
-- careful path: the tasks are `running`, with a lease), and run_next_tasks
-- takes the attempts in the same statement (the fast path: `taking` names the
-- worker, the tasks are `scheduled` until the end records them, and a fast
-- batch stops starting programs once `budget` has passed). One row per task,
-- in task_id order; `outcome` says what became of it:
--   finished, retry, error  the attempt ran and is recorded (record_attempts);
--               `error` is its message, `status` the task's status after;
--   cancelled   someone asked to cancel the task (retask.cancel_requests): it
--               was not run, or its program was stopped; recorded cancelled;
--   taken       the task is not running that attempt (it was rescued): not run;
--   interrupted a cancel that was no task's request stopped its program (its
--               worker stopping, pg_cancel_backend, or a cancel meant for
--               another task of the batch). Nothing is recorded: the caller
--               decides (lost if it was stopping, unrun if it cancelled for
--               another task, else an error with SQLSTATE 57014), with `error`
--               and `context`;
--   unrun       not started, or stopped before it had its full time; nothing
--               recorded: run it again in a new statement.
-- The session's statement_timeout is the per-task timeout, and every task must
-- get all of it. Raised in the statement's first program, it is that task's
-- timeout (recorded), and the rest come back unrun (the timer is spent). Raised
-- in a later program, it cut short a task that had not had its full time: that
-- task and the rest come back unrun.
CREATE FUNCTION retask.run_held(
    held retask.tasks[], taking text, budget interval, path text, max_result_bytes integer)
RETURNS TABLE (task_id bigint, attempt integer, outcome text, status text, error text,
               context text, duration_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    timeout interval := current_setting('statement_timeout')::interval;
    task retask.tasks;
    -- a fast batch takes each task's next attempt
    next integer := CASE WHEN taking IS NULL THEN 0 ELSE 1 END;
    held_ids bigint[] := ARRAY(SELECT (h).task_id FROM unnest(held) h);
    n integer := 0;
    -- per task run, in task_id order
    ids bigint[] := '{}';
    tries integer[] := '{}';
    ends text[] := '{}';
    results text[] := '{}';
    errors text[] := '{}';
    codes text[] := '{}';
    contexts text[] := '{}';
    starts timestamptz[] := '{}';
    stops timestamptz[] := '{}';
    began timestamptz;
    ended timestamptz;
    res text;
    err text;
    ctx text;
    code text;
    timed_out boolean;
    asked boolean;
    cut_at bigint;
    cut_state text;
    cut_error text;
    cut_context text;
    cache text;
    read_only text := current_setting('transaction_read_only');
    requested bigint[];
BEGIN
    -- once per batch: a request made during it cancels the statement, and the
    -- tasks it did not reach run again in a new one, which reads it then
    requested := ARRAY(SELECT r.task_id FROM retask.cancel_requests r
                       WHERE r.task_id = ANY (held_ids));
    FOREACH task IN ARRAY held LOOP
        -- a task someone asked to cancel is not run: it ends cancelled
        IF task.task_id = ANY (requested) THEN
            n := n + 1;
            ids[n] := task.task_id;
            tries[n] := task.attempt_count + next;
            ends[n] := 'cancelled';
            starts[n] := clock_timestamp();
            stops[n] := starts[n];
            CONTINUE;
        END IF;
        -- a program that caught the timeout's cancel itself spent the timer:
        -- the rest need a statement of their own
        IF n > 0 AND timeout > '0' AND clock_timestamp() - statement_timestamp() >= timeout THEN
            cut_at := task.task_id;
            cut_state := 'unrun';
            EXIT;
        END IF;
        -- a fast batch is for short programs: past its budget, the rest wait
        -- for the next statement
        IF n > 0 AND clock_timestamp() - statement_timestamp() >= budget THEN
            cut_at := task.task_id;
            cut_state := 'unrun';
            EXIT;
        END IF;
        began := clock_timestamp();
        res := NULL;
        err := NULL;
        ctx := NULL;
        code := NULL;
        BEGIN
            res := retask.run_program(task.program_id, task.params, path, max_result_bytes);
            -- a transaction made read-only would fail the batch's recording
            -- (failing the program's block undoes it)
            IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.<>) read_only THEN
                RAISE EXCEPTION 'the program made its transaction read-only'
                    USING ERRCODE = 'invalid_transaction_state',
                          HINT = 'A program runs inside its worker''s transaction: it must not SET TRANSACTION.';
            END IF;
            -- the next task starts from a clean session; what run_program keeps
            -- of this program (a session setting) is kept. Inside the program's
            -- block: a session it leaves in a state that cannot be reset fails
            -- its own task, not the batch.
            cache := pg_catalog.current_setting('retask.run_' OPERATOR(pg_catalog.||) task.program_id, true);
            PERFORM retask.reset_session();
        EXCEPTION
            -- OTHERS leaves out the cancel and a failed ASSERT
            WHEN others OR query_canceled OR assert_failure THEN
                GET STACKED DIAGNOSTICS err := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT,
                                        code := RETURNED_SQLSTATE;
                cache := pg_catalog.current_setting('retask.run_' OPERATOR(pg_catalog.||) task.program_id, true);
                -- the rollback undid most of what the program left; the rest goes now
                PERFORM retask.reset_after_rollback();
        END;
        ended := pg_catalog.clock_timestamp();
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        IF cache <> '' THEN
            PERFORM set_config('retask.run_' || task.program_id, cache, false);
        END IF;
        -- a cancel its task's request sent (the worker cancels the statement
        -- when told of one) ends that task, and the batch goes on
        asked := coalesce(code = '57014', false)
                 AND EXISTS (SELECT FROM retask.cancel_requests r WHERE r.task_id = task.task_id);
        IF code = '57014' AND NOT asked THEN
            -- the timer starts a little before statement_timestamp(): a cancel
            -- this late is the timeout, not a request. Named as PostgreSQL names
            -- it in English, which record_attempts recognises whatever the
            -- server's lc_messages.
            timed_out := timeout > '0' AND ended - statement_timestamp() >= timeout * 0.9;
            IF timed_out THEN
                err := 'canceling statement due to statement timeout';
            END IF;
            IF n > 0 OR NOT timed_out THEN
                cut_at := task.task_id;
                cut_state := CASE WHEN timed_out THEN 'unrun' ELSE 'interrupted' END;
                cut_error := err;
                cut_context := retask.program_error_context(ctx);
                EXIT;
            END IF;
        END IF;
        n := n + 1;
        ids[n] := task.task_id;
        tries[n] := task.attempt_count + next;
        ends[n] := CASE WHEN code IS NULL THEN 'finished' WHEN asked THEN 'cancelled' ELSE 'error' END;
        results[n] := res;
        errors[n] := err;
        codes[n] := code;
        contexts[n] := CASE WHEN ctx IS NOT NULL THEN retask.program_error_context(ctx) END;
        starts[n] := began;
        stops[n] := ended;
        -- a timeout in the first program is its own: it had all the time there was
        EXIT WHEN code = '57014' AND NOT asked;
    END LOOP;
    -- the ones left to the caller were held here without their leases renewed
    -- (renewal skips locked rows): the time this statement took does not count
    IF cut_at IS NOT NULL OR n < cardinality(held) THEN
        cut_at := coalesce(cut_at, held[n + 1].task_id);
        cut_state := coalesce(cut_state, 'unrun');
        UPDATE retask.tasks t
        SET lease_expires_at = t.lease_expires_at + (clock_timestamp() - statement_timestamp())
        WHERE t.task_id = ANY (held_ids) AND t.task_id >= cut_at
          AND t.lease_expires_at IS NOT NULL;
    END IF;
    RETURN QUERY
    SELECT u.task_id, u.attempt_count + next,
           CASE WHEN r.task_id IS NOT NULL THEN r.outcome
                WHEN u.task_id = cut_at THEN cut_state
                WHEN u.task_id > cut_at THEN 'unrun'
                ELSE 'taken' END,
           r.status,
           CASE WHEN r.task_id IS NOT NULL THEN r.error WHEN u.task_id = cut_at THEN cut_error END,
           CASE WHEN u.task_id = cut_at THEN cut_context END,
           (CASE WHEN r.task_id IS NOT NULL
                 THEN extract(epoch FROM stops[d.i] - starts[d.i]) * 1000
                 WHEN u.task_id = cut_at THEN extract(epoch FROM ended - began) * 1000
            END)::double precision
    FROM unnest(held) AS u
    LEFT JOIN retask.record_attempts(ids, tries, ends, results, errors, codes, contexts,
                                     starts, stops, timeout, taking) r ON r.task_id = u.task_id
    LEFT JOIN unnest(ids) WITH ORDINALITY AS d(task_id, i) ON d.task_id = u.task_id
    ORDER BY u.task_id;
END
$$;

-- The careful path's run: runs attempt attempts[i] of task task_ids[i], for
-- every i, each taken before (take_tasks), and records how each ended (see
-- run_held). Every row is locked before any program runs: a rescuer, which
-- skips locked rows, cannot take a task while it runs. A task rescued (and
-- maybe taken again) since it was taken comes back `taken`, not run.
CREATE FUNCTION retask.run_tasks(
    task_ids bigint[], attempts integer[],
    path text DEFAULT pg_catalog.current_setting('search_path'),
    max_result_bytes integer DEFAULT 1048576)
RETURNS TABLE (task_id bigint, attempt integer, outcome text, status text, error text,
               context text, duration_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(cardinality(task_ids), 0) <> coalesce(cardinality(attempts), 0) THEN
        RAISE EXCEPTION 'run_tasks needs as many attempts as task_ids'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT u.task_id, r.attempt, coalesce(r.outcome, 'taken'), r.status, r.error, r.context,
           r.duration_ms
    FROM unnest(run_tasks.task_ids) AS u(task_id)
    LEFT JOIN retask.run_held(ARRAY(SELECT t FROM retask.lock_tasks(task_ids, attempts) t), NULL,
                              NULL, path, max_result_bytes) r ON r.task_id = u.task_id
    ORDER BY u.task_id;
END
$$;

-- The fast path: takes up to `max_tasks` runnable tasks that run in this
-- database (in take_tasks' order), runs them and records them, all in one
-- statement, so an attempt counts in the same commit as its outcome: if the
-- statement dies, nothing of it happened. Leaves to the careful path tasks
-- that name a host, and those of programs not in `quick` (the programs the
-- worker found quick) or with a timeout of their own. Starts no program once
-- `budget` has passed since the statement began; the ones it locked and did
-- not run come back `unrun`, still scheduled. Before running any, it sends
-- the tasks it took as a NOTICE, `retask batch: {ids}`: a worker whose
-- statement died (a program killed its backend) runs those again one per
-- statement, the careful way. Rows as run_held's, with each task's program.
CREATE FUNCTION retask.run_next_tasks(
    max_tasks integer, worker text, quick bigint[],
    budget interval DEFAULT '100 milliseconds',
    path text DEFAULT pg_catalog.current_setting('search_path'),
    max_result_bytes integer DEFAULT 1048576)
RETURNS TABLE (task_id bigint, attempt integer, max_attempts integer, program_id bigint,
               program text, outcome text, status text, error text, context text,
               duration_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    picked bigint[];
    held retask.tasks[];
BEGIN
    IF run_next_tasks.worker IS NULL THEN
        RAISE EXCEPTION 'run_next_tasks needs the worker''s name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    picked := retask.pick_tasks(run_next_tasks.max_tasks, false,
                                retask.fast_programs(run_next_tasks.quick), true);
    IF cardinality(picked) = 0 THEN
        RETURN;
    END IF;
    held := ARRAY(SELECT t FROM retask.tasks t WHERE t.task_id = ANY (picked) ORDER BY t.task_id);
    -- whatever the session's level: the worker must hear it
    PERFORM pg_catalog.set_config('client_min_messages', 'notice', true);
    RAISE NOTICE 'retask batch: %', picked::text;
    RETURN QUERY
    SELECT r.task_id, r.attempt, t.max_attempts, t.program_id, p.name, r.outcome, r.status,
           r.error, r.context, r.duration_ms
    FROM retask.run_held(held, run_next_tasks.worker, run_next_tasks.budget, run_next_tasks.path,
                         run_next_tasks.max_result_bytes) r
    JOIN unnest(held) t ON t.task_id = r.task_id
    LEFT JOIN retask.programs p ON p.program_id = t.program_id
    ORDER BY r.task_id;
END
$$;

-- The course's in-database worker, for `CALL process_tasks()` from psql (the
-- course layer's procedure calls this one). Same transitions as the retask
-- worker; a program's effects and its ending commit together (the block is one
-- subtransaction). Sleeps only when idle, and rescues tasks of vanished
-- backends now and then. A procedure that commits cannot pin a search_path:
-- every name here is qualified instead.
CREATE PROCEDURE retask.process_tasks(idle interval DEFAULT '1 second')
LANGUAGE plpgsql AS $$
DECLARE
    task retask.tasks;
    result text;
    msg text;
    ctx text;
    code text;
    last_rescue timestamptz;
    cancelled boolean := false;
    -- the caller's: every task resets the session to a new one's
    path text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM pg_catalog.set_config('application_name', 'process_tasks', false);
    <<forever>>
    LOOP
        IF last_rescue IS NULL
           OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) last_rescue
              OPERATOR(pg_catalog.>) interval '10 seconds' THEN
            PERFORM retask.rescue_lost_tasks();
            last_rescue := pg_catalog.clock_timestamp();
        END IF;
        task := NULL;
        SELECT * INTO task FROM retask.take_tasks(1, 'process_tasks', NULL, false);
        COMMIT;
        IF task.task_id IS NULL THEN
            PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', idle));
            CONTINUE forever;
        END IF;
        -- one someone asked to cancel while it was being taken is not run
        IF EXISTS (SELECT FROM retask.cancel_requests r WHERE r.task_id OPERATOR(pg_catalog.=) task.task_id) THEN
            PERFORM retask.record_attempts(ARRAY[task.task_id], ARRAY[task.attempt_count], ARRAY['cancelled']);
            COMMIT;
            CONTINUE forever;
        END IF;

        BEGIN
            result := retask.run_program(task.program_id, task.params, path);
            -- as in run_tasks: a session that cannot be reset fails its task
            PERFORM retask.reset_session();
            IF NOT EXISTS (SELECT FROM retask.record_attempts(ARRAY[task.task_id], ARRAY[task.attempt_count],
                                                               ARRAY['finished'], ARRAY[result])) THEN
                RAISE EXCEPTION 'attempt % of task % was taken from this worker',
                    task.attempt_count, task.task_id;
            END IF;
        EXCEPTION
            -- OTHERS leaves out a failed ASSERT
            WHEN others OR assert_failure THEN
                GET STACKED DIAGNOSTICS msg := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT,
                                        code := RETURNED_SQLSTATE;
                PERFORM retask.reset_after_rollback();
                PERFORM retask.record_attempts(ARRAY[task.task_id], ARRAY[task.attempt_count],
                    ARRAY['error'], NULL, ARRAY[msg], ARRAY[code], ARRAY[retask.program_error_context(ctx)]);
            WHEN query_canceled THEN
                -- pg_cancel_backend (or a statement timeout) stops the worker; the
                -- session lives on, so its task would never look abandoned: end the
                -- attempt as lost before stopping. A cancel of a task someone
                -- asked to cancel (retask.cancel_tasks) ends that task alone.
                cancelled := NOT EXISTS (SELECT FROM retask.cancel_requests r
                                         WHERE r.task_id OPERATOR(pg_catalog.=) task.task_id);
                PERFORM retask.record_attempts(ARRAY[task.task_id], ARRAY[task.attempt_count],
                    ARRAY[CASE WHEN cancelled THEN 'lost' ELSE 'cancelled' END], NULL,
                    ARRAY['process_tasks was cancelled during the task']);
        END;
        PERFORM pg_catalog.set_config('application_name', 'process_tasks', false);
        COMMIT;
        IF cancelled THEN
            RAISE EXCEPTION 'canceling statement due to user request' USING ERRCODE = 'query_canceled';
        END IF;
    END LOOP;
END
$$;

-- The assignment's check: 'Мне повезло' with probability `probability`
-- (params, default 0.3), otherwise one of several different errors.
CREATE FUNCTION retask.lucky(params jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p double precision := coalesce((params ->> 'probability')::double precision, 0.3);
BEGIN
    IF p NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'probability must be between 0 and 1, got %', p
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF random() < p THEN
        RETURN 'Мне повезло';
    END IF;
    CASE floor(random() * 4)::integer
        WHEN 0 THEN PERFORM 1 / 0;
        WHEN 1 THEN PERFORM 'не число'::integer;
        WHEN 2 THEN RAISE EXCEPTION 'Не повезло' USING ERRCODE = 'P0001', HINT = 'Попробуйте ещё раз.';
        ELSE RAISE EXCEPTION 'the dice said no' USING ERRCODE = 'lock_not_available';
    END CASE;
    RETURN NULL;  -- unreachable: every branch above raises
END
$$;
