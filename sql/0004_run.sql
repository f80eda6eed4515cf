-- retask 0004: running a program inside the database, the seed's in-database
-- worker, and the admin API in schema empapi. PL/pgSQL only: stock PostgreSQL
-- (and managed services) have no PL/Python.

DROP PROCEDURE IF EXISTS process_tasks();
DROP FUNCTION IF EXISTS empapi.run_program(bigint, jsonb);
DROP FUNCTION IF EXISTS empapi.run_program(bigint, jsonb, text, text);
DROP FUNCTION IF EXISTS empapi.get_programs();
DROP FUNCTION IF EXISTS empapi.get_tasks();
DROP FUNCTION IF EXISTS empapi.task_results(bigint);

-- The seed's text table: names centred over their column (as Python's
-- str.center: the odd space goes left when the width is odd), a line of dashes,
-- then each value left-justified; NULL prints as an empty cell. Widths count
-- characters, not bytes.
CREATE FUNCTION render_table(names text[], cells text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    ncols integer := cardinality(names);
    nrows integer := coalesce(array_length(cells, 1), 0);
    widths integer[] := array_fill(0, ARRAY[ncols]);
    line text[];
    out text := '';
    margin integer;
    lpad_n integer;
    v text;
BEGIN
    FOR c IN 1 .. ncols LOOP
        widths[c] := length(names[c]);
        FOR r IN 1 .. nrows LOOP
            widths[c] := greatest(widths[c], length(coalesce(cells[r][c], '')));
        END LOOP;
    END LOOP;

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        margin := widths[c] - length(names[c]);
        lpad_n := margin / 2 + (margin & widths[c] & 1);
        line := line || (repeat(' ', lpad_n) || names[c] || repeat(' ', margin - lpad_n));
    END LOOP;
    out := array_to_string(line, ' ') || E'\n';

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        line := line || repeat('-', widths[c]);
    END LOOP;
    out := out || array_to_string(line, ' ') || E'\n';

    FOR r IN 1 .. nrows LOOP
        line := '{}';
        FOR c IN 1 .. ncols LOOP
            v := coalesce(cells[r][c], '');
            line := line || (v || repeat(' ', widths[c] - length(v)));
        END LOOP;
        out := out || array_to_string(line, ' ') || E'\n';
    END LOOP;
    RETURN out;
END
$$;

-- The names of the columns `SELECT * FROM fn(...)` returns: its OUT/TABLE
-- parameters, else the attributes of its composite result, else (a scalar
-- result) the function's own name.
-- PL/pgSQL, not SQL: called from empapi.run, a SQL function would be parsed
-- and planned on every call; PL/pgSQL keeps its plan for the session.
CREATE FUNCTION program_columns(fn regprocedure) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(
            (SELECT array_agg(coalesce(nullif(a.name, ''), 'column' || a.pos) ORDER BY a.pos)
             FROM (SELECT u.name, row_number() OVER (ORDER BY u.ord) AS pos
                   FROM unnest(p.proargmodes, p.proargnames) WITH ORDINALITY AS u(mode, name, ord)
                   WHERE u.mode IN ('o', 'b', 't')) a),
            (SELECT array_agg(att.attname::text ORDER BY att.attnum)
             FROM pg_type ty JOIN pg_attribute att ON att.attrelid = ty.typrelid
             WHERE ty.oid = p.prorettype AND ty.typrelid <> 0 AND att.attnum > 0
               AND NOT att.attisdropped),
            ARRAY[p.proname::text])
        FROM pg_proc p WHERE p.oid = fn);
END
$$;

-- A failed program's PG_EXCEPTION_CONTEXT without retask's own frames: the
-- dynamic query empapi.run builds and everything that called it say nothing
-- about the program.
CREATE FUNCTION program_error_context(context text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT nullif(regexp_replace(context, '\n?SQL statement "SELECT array_agg\(ARRAY\[.*$', ''), '')
$$;

-- Runs a task's program and renders what it returned. The function name is
-- re-validated on every run and spliced only as a quoted, resolved identifier.
-- The query built for a function is kept for the session, keyed by the
-- function's oid: a function dropped and created again gets a new oid, and its
-- query is built afresh.
CREATE FUNCTION empapi.run(task tasks) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    func text;
    fn regprocedure;
    names text[];
    query text;
    plan text;
    cells text[];
BEGIN
    SELECT p.func INTO func FROM programs p WHERE p.program_id = task.program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'program % does not exist', task.program_id USING ERRCODE = 'no_data_found';
    END IF;
    fn := program_function(func);
    plan := current_setting('retask.run_plan_' || fn::oid, true);
    IF coalesce(plan, '') = '' THEN
        names := program_columns(fn);
        -- positional aliases c1..cn, so no column name is ever spliced into SQL
        SELECT format('SELECT array_agg(ARRAY[%s]) FROM %I.%I($1) AS r(%s)',
                      string_agg('r.c' || i || '::text', ', '), n.nspname, p.proname,
                      string_agg('c' || i, ', '))
        INTO query
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             generate_series(1, cardinality(names)) i
        WHERE p.oid = fn
        GROUP BY n.nspname, p.proname;
        -- as an array literal, which quotes whatever the names hold
        PERFORM set_config('retask.run_plan_' || fn::oid, ARRAY[names::text, query]::text, false);
    ELSE
        names := (plan::text[])[1]::text[];
        query := (plan::text[])[2];
    END IF;
    EXECUTE query INTO cells USING task.params;
    RETURN render_table(names, cells);
END
$$;

-- Runs one attempt of a task the caller holds (locked, in the caller's
-- transaction) and reports how it went instead of raising: the program runs in
-- a subtransaction (a savepoint), so a failure undoes only its own effects and
-- the batch's transaction goes on. A statement timeout or a cancel request
-- (query_canceled, which OTHERS does not catch) is reported too, so the worker
-- can tell a timeout from an error. One statement per task, pipelined by the
-- worker; the outcome is recorded later by complete_tasks, with the times it
-- ran between.
CREATE FUNCTION attempt_task(
    task_id bigint, OUT result text, OUT error text, OUT context text, OUT error_code text,
    OUT started timestamptz, OUT finished timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    task tasks;
BEGIN
    attempt_task.started := clock_timestamp();
    SELECT * INTO task FROM tasks t WHERE t.task_id = attempt_task.task_id;
    IF NOT FOUND THEN
        attempt_task.error := format('task %s does not exist', attempt_task.task_id);
        attempt_task.error_code := 'P0002';
        RETURN;
    END IF;
    BEGIN
        attempt_task.result := empapi.run(task);
    EXCEPTION
        WHEN others OR query_canceled THEN
            GET STACKED DIAGNOSTICS attempt_task.error := MESSAGE_TEXT,
                                    attempt_task.context := PG_EXCEPTION_CONTEXT,
                                    attempt_task.error_code := RETURNED_SQLSTATE;
            attempt_task.context := program_error_context(attempt_task.context);
    END;
    attempt_task.finished := clock_timestamp();
END
$$;

-- The seed's in-database worker, kept for `CALL process_tasks()` from psql.
-- Same transitions as the retask worker; a program's effects and its finished
-- mark commit together (the block is one subtransaction). Sleeps only when
-- idle, and rescues tasks of vanished backends now and then.
CREATE PROCEDURE process_tasks(idle interval DEFAULT '1 second')
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
            WHEN others THEN
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

CREATE FUNCTION empapi.run_program(program_id bigint, params jsonb,
                                   host text DEFAULT NULL, port text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT enqueue_task(program_id, params, host, port)
$$;

CREATE FUNCTION empapi.get_programs()
RETURNS TABLE (program_id bigint, name text, func text, max_attempts integer,
               retry_delay interval, retry_backoff text, retry_delay_max interval)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.program_id, p.name, p.func, p.max_attempts, p.retry_delay, p.retry_backoff, p.retry_delay_max
    FROM programs p ORDER BY p.program_id
$$;

-- The course application's columns first, in its order; retask's after them.
CREATE FUNCTION empapi.get_tasks()
RETURNS TABLE (task_id bigint, name text, status text, params jsonb, started timestamptz,
               finished timestamptz, program_id bigint, attempt_count integer,
               max_attempts integer, run_after timestamptz, host text, port text, result text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.task_id, p.name, t.status, t.params, t.started, t.finished,
           t.program_id, t.attempt_count, t.max_attempts, t.run_after, t.host, t.port, t.result
    FROM tasks t LEFT JOIN programs p ON p.program_id = t.program_id
    ORDER BY t.task_id
$$;

CREATE FUNCTION empapi.task_results(task_id bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.result FROM tasks t WHERE t.task_id = task_results.task_id
$$;

-- Every finished attempt of a task, first to last: what a person checks to see
-- that a task needed more than one try and what each try did.
CREATE FUNCTION empapi.task_attempts(task_id bigint)
RETURNS TABLE (attempt integer, outcome text, started timestamptz, finished timestamptz,
               error text, context text, pid integer, worker text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT a.attempt, a.outcome, a.started, a.finished, a.error, a.context, a.pid, a.worker
    FROM task_attempts a WHERE a.task_id = task_attempts.task_id
    ORDER BY a.attempt
$$;

-- The assignment's check: 'Мне повезло' with probability `probability`
-- (params, default 0.3), otherwise one of several different errors.
CREATE OR REPLACE FUNCTION retask_lucky(params jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
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

-- The privileges the seed's replaced functions had (saved by 0001), granted
-- again to their new versions of the same name.
DO $$
DECLARE
    saved record;
    fn regprocedure;
    kind text;
    grant_ record;
BEGIN
    FOR saved IN SELECT * FROM retask_replaced_acl LOOP
        FOR fn, kind IN
            SELECT p.oid::regprocedure, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = saved.schema_name AND p.proname = saved.function_name
        LOOP
            EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', kind, fn);
            FOR grant_ IN SELECT * FROM aclexplode(saved.acl) LOOP
                EXECUTE format('GRANT %s ON %s %s TO %s%s', grant_.privilege_type, kind, fn,
                    CASE WHEN grant_.grantee = 0 THEN 'PUBLIC'
                         ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END,
                    CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
DROP TABLE retask_replaced_acl;
