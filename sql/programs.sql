-- retask: programs and enqueueing. A program is a function taking one jsonb
-- argument, registered under a name with its retry policy; enqueueing checks a
-- task against both and inserts it as scheduled. The rest of a task's life is
-- state_machine.sql.

-- The function a program's name means: first the name as one identifier, as
-- the course application's quote_ident(func) read it ('StockTask' is
-- "StockTask"), then as SQL text (schema-qualified, quoted parts). NULL when
-- there is none; a malformed name raises before PostgreSQL 16. It looks the
-- name up on the caller's search_path, which is its job, so it pins none: every
-- other name in it is qualified.
CREATE FUNCTION retask.lookup_function(func text) RETURNS regprocedure
LANGUAGE plpgsql STABLE AS $$
DECLARE
    fn pg_catalog.regprocedure;
BEGIN
    IF func OPERATOR(pg_catalog.!~) '[."]' THEN
        fn := pg_catalog.to_regprocedure(pg_catalog.quote_ident(func) OPERATOR(pg_catalog.||) '(jsonb)');
    END IF;
    RETURN coalesce(fn, pg_catalog.to_regprocedure(func OPERATOR(pg_catalog.||) '(jsonb)'));
END
$$;

-- The function behind a program: exists, is a plain function, takes exactly one
-- jsonb argument and declares its result columns. Errors say what to fix.
-- The name resolves as the caller wrote it, under `path` (by default the
-- caller's search_path: a default is evaluated before the function's own
-- search_path applies); it is stored schema-qualified, so running a program
-- never depends on a search_path.
CREATE FUNCTION retask.program_function(
    func text, path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS regprocedure LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fn regprocedure;
    proc pg_catalog.pg_proc;
BEGIN
    IF func IS NULL OR btrim(func) = '' THEN
        RAISE EXCEPTION 'function name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the caller's path for this lookup only
    PERFORM set_config('search_path', path, true);
    BEGIN
        fn := retask.lookup_function(func);
    EXCEPTION WHEN others THEN  -- before PostgreSQL 16 a malformed name raises
        fn := NULL;
    END;
    PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
    IF fn IS NULL THEN
        RAISE EXCEPTION 'function %(jsonb) does not exist', func
            USING ERRCODE = 'undefined_function',
                  HINT = 'A program is a function taking one jsonb argument: CREATE FUNCTION name(params jsonb) RETURNS ...';
    END IF;
    SELECT * INTO proc FROM pg_catalog.pg_proc WHERE oid = fn;
    IF proc.pronamespace = pg_my_temp_schema() OR pg_is_other_temp_schema(proc.pronamespace) THEN
        RAISE EXCEPTION '% is a temporary function', fn
            USING ERRCODE = 'wrong_object_type', HINT = 'A program must outlive the session that registers it.';
    END IF;
    IF proc.prokind <> 'f' THEN
        RAISE EXCEPTION '% is not a plain function', fn
            USING ERRCODE = 'wrong_object_type', HINT = 'Procedures, aggregates and window functions cannot be programs.';
    END IF;
    IF proc.prorettype = 'record'::regtype AND proc.proallargtypes IS NULL THEN
        RAISE EXCEPTION '% returns an untyped record', fn
            USING ERRCODE = 'invalid_function_definition',
                  HINT = 'Declare the result columns with RETURNS TABLE (...) or OUT parameters.';
    END IF;
    RETURN fn;
END
$$;

-- Rejects a retry policy the tables would refuse, with a message that says
-- why; NULL means "not given" and passes. Shared by programs and tasks, and by
-- the CLI, which asks before it writes anything.
CREATE FUNCTION retask.check_retry_policy(
    max_attempts integer, retry_backoff text, retry_delay interval, retry_delay_max interval)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'max attempts must be between 1 and 100, got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retry_backoff NOT IN ('fixed', 'exponential') THEN
        RAISE EXCEPTION 'retry backoff must be fixed or exponential, got %', retry_backoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retry_delay < '0' OR retry_delay_max < '0' THEN
        RAISE EXCEPTION 'retry delays cannot be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a retry that could never come would leave its task waiting for ever
    IF retry_delay > '1 year' OR retry_delay_max > '1 year' THEN
        RAISE EXCEPTION 'retry delays are at most 1 year' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Rejects a priority the tables would refuse; NULL passes. Higher runs first.
CREATE FUNCTION retask.check_priority(priority integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF priority NOT BETWEEN -1000000 AND 1000000 THEN
        RAISE EXCEPTION 'priority must be between -1000000 and 1000000, got %', priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Creates a program, or updates the one of that name. Names are matched
-- exactly, and are never all digits (those are ids); a lock keeps two
-- concurrent registrations of one name from both inserting. `timeout` is the
-- statement timeout of the program's tasks, in place of the worker's
-- (`work --task-timeout`), up to a day; '0' clears it. `priority` is what its
-- tasks get unless enqueued with their own (default 0). NULL keeps what the
-- program has.
CREATE FUNCTION retask.upsert_program(
    name text, func text,
    max_attempts integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    retry_backoff text DEFAULT NULL, retry_delay_max interval DEFAULT NULL,
    path text DEFAULT pg_catalog.current_setting('search_path'),
    timeout interval DEFAULT NULL, priority integer DEFAULT NULL,
    OUT program_id bigint, OUT created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    fn regprocedure;
    canonical text;
BEGIN
    IF upsert_program.timeout < '0' OR upsert_program.timeout > '1 day' THEN
        RAISE EXCEPTION 'a program''s timeout must be from 0 (none: the worker''s) to 1 day, got %',
            upsert_program.timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM retask.check_priority(upsert_program.priority);
    IF upsert_program.name IS NULL OR btrim(upsert_program.name) = '' THEN
        RAISE EXCEPTION 'program name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- enqueue and status read a number as a program id (spaces around it trimmed)
    IF upsert_program.name ~ '^\s*[0-9]+\s*$' THEN
        RAISE EXCEPTION 'program name "%" is all digits, which retask reads as a program id',
            btrim(upsert_program.name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the program a name with at least one letter, such as "job_1".';
    END IF;
    PERFORM retask.check_retry_policy(upsert_program.max_attempts, upsert_program.retry_backoff,
                                      upsert_program.retry_delay, upsert_program.retry_delay_max);
    fn := retask.program_function(upsert_program.func, upsert_program.path);
    SELECT format('%I.%I', n.nspname, p.proname) INTO canonical
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.oid = fn;

    PERFORM pg_advisory_xact_lock(hashtextextended('retask.program:' || upsert_program.name, 0));
    UPDATE retask.programs p
    SET func = canonical,
        max_attempts = coalesce(upsert_program.max_attempts, p.max_attempts),
        retry_delay = coalesce(upsert_program.retry_delay, p.retry_delay),
        retry_backoff = coalesce(upsert_program.retry_backoff, p.retry_backoff),
        retry_delay_max = coalesce(upsert_program.retry_delay_max, p.retry_delay_max),
        timeout = CASE WHEN upsert_program.timeout IS NULL THEN p.timeout
                       ELSE nullif(upsert_program.timeout, '0') END,
        priority = coalesce(upsert_program.priority, p.priority)
    WHERE p.program_id = (SELECT min(q.program_id) FROM retask.programs q
                          WHERE q.name = upsert_program.name)
    RETURNING p.program_id INTO upsert_program.program_id;
    created := NOT FOUND;
    IF created THEN
        INSERT INTO retask.programs (name, func, max_attempts, retry_delay, retry_backoff, retry_delay_max,
                                     timeout, priority)
        VALUES (upsert_program.name, canonical,
                coalesce(upsert_program.max_attempts, 3), coalesce(upsert_program.retry_delay, '0'),
                coalesce(upsert_program.retry_backoff, 'fixed'),
                coalesce(upsert_program.retry_delay_max, '1 hour'),
                nullif(upsert_program.timeout, '0'), coalesce(upsert_program.priority, 0))
        RETURNING programs.program_id INTO upsert_program.program_id;
    END IF;
END
$$;

-- Every program row, however it is written (upsert_program, the course's
-- register_program, an INSERT of a role granted one): the function exists, is
-- a program's, is not temporary, and the writing role may EXECUTE it, since a
-- worker will run it for whoever may enqueue. Stored schema-qualified. No
-- pinned path: an unqualified name resolves as its writer wrote it; every name
-- here is qualified instead.
CREATE FUNCTION retask.check_program() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    fn pg_catalog.regprocedure := retask.program_function(NEW.func);
BEGIN
    SELECT pg_catalog.format('%I.%I', n.nspname, p.proname) INTO NEW.func
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE p.oid OPERATOR(pg_catalog.=) fn;
    IF NOT pg_catalog.has_function_privilege(fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %(jsonb)', NEW.func
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A role registers only functions it may execute itself.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER programs_check BEFORE INSERT OR UPDATE OF func ON retask.programs
    FOR EACH ROW EXECUTE FUNCTION retask.check_program();

-- What is wrong with where a task says it runs, or NULL: on this server (both
-- NULL) or on host:port. Enqueueing refuses such a task; a worker fails a row
-- written some other way with this message, without connecting anywhere.
CREATE FUNCTION retask.host_port_problem(host text, port text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN (host IS NULL) <> (port IS NULL) THEN 'host and port go together: give both or neither'
        WHEN host IS NOT NULL AND btrim(host) = '' THEN 'host is empty'
        -- in two steps: CASE tries its branches in order, so no text reaches the cast
        WHEN port IS NOT NULL AND port !~ '^[0-9]{1,5}$'
            THEN format('port must be a number from 1 to 65535, got "%s"', port)
        WHEN port IS NOT NULL AND port::integer NOT BETWEEN 1 AND 65535
            THEN format('port must be a number from 1 to 65535, got "%s"', port)
    END
$$;

-- Refuses a task whose host and port are wrong (see host_port_problem).
CREATE FUNCTION retask.check_host_port(host text, port text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text := retask.host_port_problem(host, port);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Queues one task per element of `params`, in order, and says of each whether
-- it is new or, with a `key`, a task that was there already: while a task of
-- the program with that key is scheduled or running, enqueueing it again
-- returns that task's id (`existing`), whatever its params. The unique index
-- tasks_key_idx decides, not a look-up first, so concurrent calls with one key
-- give one task. A key names one task: with a key, `params` has at most one
-- element. NULLs in the optional arguments take the program's policy and
-- priority. Runs as its owner, so that a role granted retask_enqueue needs no
-- write on the tasks table: what it may queue is exactly what this function
-- checks (no program runs here).
CREATE FUNCTION retask.enqueue_keyed(
    program_id bigint, params jsonb[],
    host text DEFAULT NULL, port text DEFAULT NULL,
    max_attempts integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    retry_backoff text DEFAULT NULL, run_after timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL, key text DEFAULT NULL)
RETURNS TABLE (task_id bigint, existing boolean) LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    prog retask.programs;
    bad jsonb;
    inserted bigint;
    found_ bigint;
BEGIN
    SELECT * INTO prog FROM retask.programs p WHERE p.program_id = enqueue_keyed.program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'program % does not exist', enqueue_keyed.program_id
            USING ERRCODE = 'no_data_found', HINT = 'List the programs with retask status or empapi.get_programs().';
    END IF;
    -- what was not given needs no check (each check is a call: most enqueues give none)
    IF enqueue_keyed.host IS NOT NULL OR enqueue_keyed.port IS NOT NULL THEN
        PERFORM retask.check_host_port(enqueue_keyed.host, enqueue_keyed.port);
    END IF;
    IF num_nonnulls(enqueue_keyed.max_attempts, enqueue_keyed.retry_backoff,
                    enqueue_keyed.retry_delay) > 0 THEN
        PERFORM retask.check_retry_policy(enqueue_keyed.max_attempts, enqueue_keyed.retry_backoff,
                                          enqueue_keyed.retry_delay, NULL);
    END IF;
    IF enqueue_keyed.priority IS NOT NULL THEN
        PERFORM retask.check_priority(enqueue_keyed.priority);
    END IF;
    SELECT p INTO bad FROM unnest(enqueue_keyed.params) p
    WHERE p IS NOT NULL AND jsonb_typeof(p) <> 'object' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'params must be a JSON object, got %: %', jsonb_typeof(bad), left(bad::text, 60)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_keyed.key IS NOT NULL THEN
        IF length(enqueue_keyed.key) NOT BETWEEN 1 AND 1000 THEN
            RAISE EXCEPTION 'a key is 1 to 1000 characters, got %', length(enqueue_keyed.key)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF cardinality(enqueue_keyed.params) > 1 THEN
            RAISE EXCEPTION 'a key names one task, and % were given with key "%"',
                cardinality(enqueue_keyed.params), left(enqueue_keyed.key, 60)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Enqueue one task per key.';
        END IF;
    END IF;

    -- Without a key, or with one no task holds, the INSERT queues. Else it
    -- waits for a concurrent insert of the key to commit and inserts nothing;
    -- the task holding the key is then looked up, and if it ended meanwhile
    -- the INSERT is tried again.
    FOR try_ IN 1..100 LOOP
        RETURN QUERY
        INSERT INTO retask.tasks AS t (program_id, status, params, host, port, max_attempts,
                                       retry_delay, retry_backoff, retry_delay_max, run_after,
                                       priority, key)
        SELECT prog.program_id, 'scheduled', coalesce(u.p, '{}'), enqueue_keyed.host, enqueue_keyed.port,
               coalesce(enqueue_keyed.max_attempts, prog.max_attempts),
               coalesce(enqueue_keyed.retry_delay, prog.retry_delay),
               coalesce(enqueue_keyed.retry_backoff, prog.retry_backoff),
               prog.retry_delay_max,
               coalesce(enqueue_keyed.run_after, now()),
               coalesce(enqueue_keyed.priority, prog.priority),
               enqueue_keyed.key
        FROM unnest(enqueue_keyed.params) WITH ORDINALITY AS u(p, i)
        ORDER BY u.i
        ON CONFLICT (program_id, key) WHERE key IS NOT NULL AND status IN ('scheduled', 'running')
        DO NOTHING
        RETURNING t.task_id, false;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        EXIT WHEN inserted > 0 OR enqueue_keyed.key IS NULL
                  OR coalesce(cardinality(enqueue_keyed.params), 0) = 0;
        RETURN QUERY
        SELECT t.task_id, true FROM retask.tasks t
        WHERE t.program_id = prog.program_id AND t.key = enqueue_keyed.key
          AND t.status IN ('scheduled', 'running');
        GET DIAGNOSTICS found_ = ROW_COUNT;
        IF found_ > 0 THEN
            RETURN;
        END IF;
    END LOOP;
    IF inserted = 0 AND enqueue_keyed.key IS NOT NULL AND cardinality(enqueue_keyed.params) > 0 THEN
        RAISE EXCEPTION 'the task with key "%" kept ending while it was enqueued again',
            left(enqueue_keyed.key, 60)
            USING ERRCODE = 'serialization_failure';
    END IF;

    IF inserted > 0 AND coalesce(enqueue_keyed.run_after, now()) <= now() THEN
        PERFORM retask.wake_workers();
    END IF;
END
$$;

-- Queues one task per element of `params` and returns their ids, in order;
-- with a `key`, the id of the task that holds it if one is scheduled or
-- running (see enqueue_keyed).
CREATE FUNCTION retask.enqueue_tasks(
    program_id bigint, params jsonb[],
    host text DEFAULT NULL, port text DEFAULT NULL,
    max_attempts integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    retry_backoff text DEFAULT NULL, run_after timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL, key text DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.task_id FROM retask.enqueue_keyed(program_id, params, host, port, max_attempts, retry_delay,
                                               retry_backoff, run_after, priority, key) e
$$;

CREATE FUNCTION retask.enqueue_task(
    program_id bigint, params jsonb DEFAULT '{}',
    host text DEFAULT NULL, port text DEFAULT NULL,
    max_attempts integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    retry_backoff text DEFAULT NULL, run_after timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL, key text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.task_id FROM retask.enqueue_keyed(program_id, ARRAY[params], host, port, max_attempts,
                                               retry_delay, retry_backoff, run_after, priority, key) e
$$;

-- Pauses (`paused` true) or resumes a program: workers take no new task of a
-- paused one (take_tasks skips them); tasks already running go on. Resuming
-- wakes the workers. True if it changed. Called by the two below.
CREATE FUNCTION retask.set_paused(program_id bigint, paused boolean)
RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE retask.programs p SET paused = set_paused.paused
    WHERE p.program_id = set_paused.program_id AND p.paused <> set_paused.paused;
    IF FOUND THEN
        IF NOT set_paused.paused THEN
            PERFORM retask.wake_workers();
        END IF;
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT FROM retask.programs p WHERE p.program_id = set_paused.program_id) THEN
        RAISE EXCEPTION 'program % does not exist', set_paused.program_id
            USING ERRCODE = 'no_data_found', HINT = 'List the programs with retask status or empapi.get_programs().';
    END IF;
    RETURN false;
END
$$;

-- Both run as their owner (no program runs here), so an administrator needs
-- no write on the programs table.
CREATE FUNCTION retask.pause_program(program_id bigint)
RETURNS boolean LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT retask.set_paused(program_id, true)
$$;

CREATE FUNCTION retask.resume_program(program_id bigint)
RETURNS boolean LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT retask.set_paused(program_id, false)
$$;
