-- The seed's background-task mechanism exactly as the assignment gives it
-- (shared/seed/000_*.txt): take_task(), complete_task() and process_tasks()
-- with its pg_sleep(1) per loop, before any retry logic. Only empapi.run is a
-- stand-in: the course writes it in PL/Python, which stock PostgreSQL lacks;
-- this one runs the program's function the same way and returns its rows as
-- text instead of a formatted table.

CREATE SCHEMA empapi;

CREATE TABLE programs (
    program_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    func        text NOT NULL
);

CREATE TABLE tasks (
    task_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id     BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status = ANY (ARRAY['scheduled', 'running', 'finished', 'error'])),
    params         JSONB,
    pid            INTEGER,
    started        TIMESTAMPTZ,
    finished       TIMESTAMPTZ,
    result         TEXT,
    host           TEXT,
    port           TEXT,
    attempt_count  INTEGER NOT NULL DEFAULT 0,
    CHECK ((host IS NOT NULL AND port IS NOT NULL) OR (host IS NULL AND port IS NULL))
);

-- the course application's index for take_task()
CREATE INDEX tasks_status_scheduled_idx ON tasks (task_id) WHERE status = 'scheduled';

CREATE FUNCTION take_task(OUT task tasks) AS $$
BEGIN
    SELECT *
    INTO task
    FROM tasks
    WHERE status = 'scheduled'
    ORDER BY task_id LIMIT 1
    FOR UPDATE SKIP LOCKED;

    UPDATE tasks
    SET status = 'running',
        started = current_timestamp,
        pid = pg_backend_pid()
    WHERE task_id = task.task_id;
END;
$$ LANGUAGE plpgsql VOLATILE;

CREATE FUNCTION complete_task(task tasks, status text, result text) RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    UPDATE tasks
    SET finished = current_timestamp,
        status = complete_task.status,
        result = complete_task.result
    WHERE task_id = task.task_id;
END;

CREATE FUNCTION empapi.run(task tasks) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    func text;
    result text;
BEGIN
    SELECT p.func INTO func FROM programs p WHERE p.program_id = task.program_id;
    EXECUTE format('SELECT string_agg(r::text, E''\n'') FROM %I($1) AS r', func)
        INTO result USING task.params;
    RETURN result;
END;
$$;

CREATE PROCEDURE process_tasks() AS $$
DECLARE
    task tasks;
    result text;
    ctx text;
BEGIN
    SET application_name = 'process_tasks';
    <<forever>>
    LOOP
        PERFORM pg_sleep(1);
        SELECT * INTO task FROM take_task();
        COMMIT;
        CONTINUE forever WHEN task.task_id IS NULL;

        BEGIN
            result := empapi.run(task);
            PERFORM complete_task(task, 'finished', result);
        EXCEPTION
            WHEN others THEN
                GET STACKED DIAGNOSTICS
                    result := MESSAGE_TEXT, ctx := PG_EXCEPTION_CONTEXT;
                PERFORM complete_task(
                    task, 'error', result || E'\n' ||  ctx
                );
        END;
        COMMIT;
    END LOOP;
END;
$$ LANGUAGE plpgsql;
