-- retask 0001: retask's schema and its tables.
--
-- Written to take over, in place, a database that already holds the course
-- application's `programs` and `tasks` (or one that retask installed into
-- `public` before it had a schema of its own): those tables move into retask's
-- schema with every row, id and index, and grow retask's columns. The course's
-- functions are dropped here; sql/compat.sql puts their names back, granted to
-- whoever held them before (kept in retask.saved_acl until then).

CREATE SCHEMA IF NOT EXISTS retask;
-- only its owner creates objects in it (CREATE is never granted to PUBLIC on a
-- new schema; an existing one is made so)
REVOKE CREATE ON SCHEMA retask FROM PUBLIC;

-- Privileges of the objects this migration replaces, by name, for compat.sql.
CREATE TABLE retask.saved_acl (
    object  text PRIMARY KEY,   -- e.g. 'public.tasks', 'empapi.get_tasks'
    kind    text NOT NULL CHECK (kind IN ('relation', 'routine')),
    acl     aclitem[] NOT NULL
);

DO $$
DECLARE
    -- retask installed into public (schema version 5 and before)
    legacy boolean := to_regclass('public.retask_migrations') IS NOT NULL;
    -- the course application: its two tables with their columns
    course boolean := (
        SELECT count(*) = 8 FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        WHERE c.relkind = 'r' AND NOT a.attisdropped AND a.attnum > 0
          AND (a.attrelid::regclass, a.attname::text) IN (
              (to_regclass('public.programs'), 'program_id'), (to_regclass('public.programs'), 'name'),
              (to_regclass('public.programs'), 'func'), (to_regclass('public.tasks'), 'task_id'),
              (to_regclass('public.tasks'), 'program_id'), (to_regclass('public.tasks'), 'status'),
              (to_regclass('public.tasks'), 'params'), (to_regclass('public.tasks'), 'result')));
    fn record;
BEGIN
    IF NOT (legacy OR course) THEN
        RETURN;
    END IF;
    INSERT INTO retask.saved_acl
    SELECT 'public.' || c.relname, 'relation', c.relacl
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ('tasks', 'programs')
      AND c.relacl IS NOT NULL;
    -- The course's functions, and every function retask put in public. Those of
    -- the course written with BEGIN ATOMIC depend on the tasks row type and
    -- would block the ALTER TABLEs below, so all go first.
    FOR fn IN
        SELECT p.oid::regprocedure AS sig, n.nspname, p.proname, p.prokind, p.proacl
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE (n.nspname = 'public' AND p.proname IN (
                  'take_task', 'complete_task', 'register_program', 'process_tasks'))
           OR (n.nspname = 'empapi' AND p.proname IN (
                  'run', 'run_program', 'get_programs', 'get_tasks', 'task_results', 'task_attempts'))
           OR (legacy AND n.nspname = 'public' AND p.proname IN (
                  'program_function', 'check_retry_policy', 'upsert_program', 'enqueue_tasks',
                  'enqueue_task', 'retry_delay_after', 'take_tasks', 'finish_tasks', 'finish_task',
                  'fail_tasks', 'fail_task', 'complete_tasks', 'rescue_lost_tasks', 'renew_leases',
                  'tasks_pending', 'render_table', 'program_columns', 'program_error_context',
                  'attempt_task', 'run_tasks', 'retask_lucky'))
        ORDER BY p.oid
    LOOP
        -- what was granted goes to the function that does that job now: the
        -- course's names keep theirs, retask's old ones pass to retask.*
        IF fn.proacl IS NOT NULL THEN
            INSERT INTO retask.saved_acl VALUES (
                CASE WHEN fn.nspname = 'empapi'
                          OR fn.proname IN ('take_task', 'complete_task', 'register_program', 'process_tasks')
                     THEN fn.nspname || '.' || fn.proname
                     WHEN fn.proname = 'retask_lucky' THEN 'retask.lucky'
                     WHEN fn.proname IN ('finish_tasks', 'finish_task', 'fail_tasks', 'fail_task',
                                         'complete_tasks', 'attempt_task') THEN 'retask.record_attempts'
                     ELSE 'retask.' || fn.proname END,
                'routine', fn.proacl)
            ON CONFLICT (object) DO NOTHING;
        END IF;
        EXECUTE format('DROP %s %s', CASE fn.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, fn.sig);
    END LOOP;
    ALTER TABLE public.programs SET SCHEMA retask;
    ALTER TABLE public.tasks SET SCHEMA retask;
    IF legacy THEN
        ALTER TABLE public.task_attempts SET SCHEMA retask;
        DROP TABLE public.retask_migrations;
        -- the demo's program, now retask.lucky (sql/run.sql)
        UPDATE retask.programs SET func = 'retask.lucky' WHERE func = 'public.retask_lucky';
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS retask.programs (
    program_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    func        text NOT NULL
);

-- Retry policy per program; a task copies it at enqueue time (and may override
-- it there), so changing a program never changes tasks already queued.
ALTER TABLE retask.programs
    ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN IF NOT EXISTS retry_delay interval NOT NULL DEFAULT '0' CHECK (retry_delay BETWEEN '0' AND '1 year'),
    ADD COLUMN IF NOT EXISTS retry_backoff text NOT NULL DEFAULT 'fixed' CHECK (retry_backoff IN ('fixed', 'exponential')),
    ADD COLUMN IF NOT EXISTS retry_delay_max interval NOT NULL DEFAULT '1 hour' CHECK (retry_delay_max BETWEEN '0' AND '1 year');

CREATE INDEX IF NOT EXISTS programs_name_idx ON retask.programs (name);

CREATE TABLE IF NOT EXISTS retask.tasks (
    task_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id     bigint NOT NULL,
    status         text NOT NULL CHECK (status = ANY (ARRAY['scheduled', 'running', 'finished', 'error'])),
    params         jsonb,
    pid            integer,
    started        timestamptz,
    finished       timestamptz,
    result         text,
    host           text,
    port           text,
    attempt_count  integer NOT NULL DEFAULT 0,
    CHECK ((host IS NOT NULL AND port IS NOT NULL) OR (host IS NULL AND port IS NULL))
);

ALTER TABLE retask.tasks
    -- the course's table may predate attempt_count
    ADD COLUMN IF NOT EXISTS attempt_count integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN IF NOT EXISTS retry_delay interval NOT NULL DEFAULT '0' CHECK (retry_delay BETWEEN '0' AND '1 year'),
    ADD COLUMN IF NOT EXISTS retry_backoff text NOT NULL DEFAULT 'fixed' CHECK (retry_backoff IN ('fixed', 'exponential')),
    ADD COLUMN IF NOT EXISTS retry_delay_max interval NOT NULL DEFAULT '1 hour' CHECK (retry_delay_max BETWEEN '0' AND '1 year'),
    -- not before: a retried task waits here for its backoff to pass
    ADD COLUMN IF NOT EXISTS run_after timestamptz NOT NULL DEFAULT now(),
    -- who holds a running task: the backend pid (the course's column), a worker
    -- name, and for workers outside the database a lease they must renew
    ADD COLUMN IF NOT EXISTS worker text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS created timestamptz NOT NULL DEFAULT now();

-- Rows written before retask never counted their attempt: one that left
-- `scheduled` was tried once. Counting it keeps "attempt n of m" true for them.
UPDATE retask.tasks SET attempt_count = 1 WHERE attempt_count = 0 AND status <> 'scheduled';

-- NOT VALID: guards new rows without failing on an old orphan.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conname = 'tasks_program_id_fkey'
                   AND conrelid = 'retask.tasks'::regclass) THEN
        ALTER TABLE retask.tasks ADD CONSTRAINT tasks_program_id_fkey
            FOREIGN KEY (program_id) REFERENCES retask.programs NOT VALID;
    END IF;
END $$;

-- Only scheduled rows live in this index, so taking a task costs the same
-- however many finished tasks there are; led by run_after, so tasks waiting
-- for a later retry are never scanned past to find a runnable one.
CREATE INDEX IF NOT EXISTS tasks_runnable_idx ON retask.tasks (run_after, task_id) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS tasks_running_idx ON retask.tasks (task_id) WHERE status = 'running';
-- Every attempt updates its task twice (take, then finish or fail), and no such
-- update is HOT, so each index costs two insertions per attempt: a program_id
-- index is left out (nothing on the hot path reads it; dropping it made a
-- drain of 60,000 no-op tasks 8-12% faster).
DROP INDEX IF EXISTS retask.tasks_program_id_idx;

-- One row per ended attempt, written by the transition that ends it, so a
-- task's history and its status always change in the same statement.
CREATE TABLE IF NOT EXISTS retask.task_attempts (
    task_id   bigint NOT NULL REFERENCES retask.tasks ON DELETE CASCADE,
    attempt   integer NOT NULL,
    started   timestamptz,
    finished  timestamptz NOT NULL DEFAULT now(),
    outcome   text NOT NULL CHECK (outcome IN ('finished', 'error', 'lost')),
    error     text,
    context   text,
    pid       integer,
    worker    text,
    PRIMARY KEY (task_id, attempt)
);

-- Rows finished or failed before retask: their one attempt gets its history
-- row, so the history always holds sum(attempt_count) ended attempts.
INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome, error, pid)
SELECT t.task_id, 1, t.started, coalesce(t.finished, t.started, now()), t.status,
       CASE WHEN t.status = 'error' THEN t.result END, t.pid
FROM retask.tasks t
WHERE t.status IN ('finished', 'error') AND t.attempt_count = 1
ON CONFLICT DO NOTHING;
