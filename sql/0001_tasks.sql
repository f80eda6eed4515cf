-- retask 0001: the tables. Written to upgrade a database that already holds the
-- course application's `programs` and `tasks` in place: every statement either
-- creates what is missing or adds to what exists, and no row is rewritten except
-- where noted.

CREATE SCHEMA IF NOT EXISTS empapi;

-- The seed's functions that 0001-0004 replace would lose their privileges with
-- them (a course database may have revoked PUBLIC's and granted a role's): keep
-- them here, to be granted again to the new versions at the end of 0004.
CREATE TABLE retask_replaced_acl (schema_name name, function_name name, acl aclitem[]);
INSERT INTO retask_replaced_acl
SELECT n.nspname, p.proname, p.proacl
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proacl IS NOT NULL
  AND (n.nspname::text, p.proname::text) IN (
      ('public', 'take_task'), ('public', 'complete_task'), ('public', 'register_program'),
      ('public', 'process_tasks'), ('empapi', 'run'), ('empapi', 'run_program'),
      ('empapi', 'get_programs'), ('empapi', 'get_tasks'), ('empapi', 'task_results'));

-- The seed's functions are replaced by 0002-0004. Those written with a
-- BEGIN ATOMIC body that uses the tasks row type would block ALTER TABLE below,
-- so they go first.
DROP FUNCTION IF EXISTS take_task();
DROP FUNCTION IF EXISTS complete_task(tasks, text, text);
DROP FUNCTION IF EXISTS empapi.run(tasks);

CREATE TABLE IF NOT EXISTS programs (
    program_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    func        text NOT NULL
);

-- Retry policy per program; a task copies it at enqueue time (and may override
-- it there), so changing a program never changes tasks already queued.
ALTER TABLE programs
    ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3
        CONSTRAINT programs_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN IF NOT EXISTS retry_delay interval NOT NULL DEFAULT '0'
        CONSTRAINT programs_retry_delay_check CHECK (retry_delay BETWEEN '0' AND '1 year'),
    ADD COLUMN IF NOT EXISTS retry_backoff text NOT NULL DEFAULT 'fixed'
        CONSTRAINT programs_retry_backoff_check CHECK (retry_backoff IN ('fixed', 'exponential')),
    ADD COLUMN IF NOT EXISTS retry_delay_max interval NOT NULL DEFAULT '1 hour'
        CONSTRAINT programs_retry_delay_max_check CHECK (retry_delay_max BETWEEN '0' AND '1 year');

CREATE INDEX IF NOT EXISTS programs_name_idx ON programs (name);

CREATE TABLE IF NOT EXISTS tasks (
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

-- The seed's table may predate attempt_count.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS attempt_count integer NOT NULL DEFAULT 0;

ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3
        CONSTRAINT tasks_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN IF NOT EXISTS retry_delay interval NOT NULL DEFAULT '0'
        CONSTRAINT tasks_retry_delay_check CHECK (retry_delay BETWEEN '0' AND '1 year'),
    ADD COLUMN IF NOT EXISTS retry_backoff text NOT NULL DEFAULT 'fixed'
        CONSTRAINT tasks_retry_backoff_check CHECK (retry_backoff IN ('fixed', 'exponential')),
    ADD COLUMN IF NOT EXISTS retry_delay_max interval NOT NULL DEFAULT '1 hour'
        CONSTRAINT tasks_retry_delay_max_check CHECK (retry_delay_max BETWEEN '0' AND '1 year'),
    -- not before: a retried task waits here for its backoff to pass
    ADD COLUMN IF NOT EXISTS run_after timestamptz NOT NULL DEFAULT now(),
    -- who holds a running task: the backend pid (seed column), a worker name,
    -- and for out-of-database workers a lease they must renew
    ADD COLUMN IF NOT EXISTS worker text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS created timestamptz NOT NULL DEFAULT now();

-- Rows written before retask never counted their attempt: one that left
-- `scheduled` was tried once. Counting it keeps "attempt n of m" true for them.
UPDATE tasks SET attempt_count = 1 WHERE attempt_count = 0 AND status <> 'scheduled';

-- NOT VALID: guards new rows without failing on an old orphan.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'tasks_program_id_fkey'
                   AND conrelid = 'tasks'::regclass) THEN
        ALTER TABLE tasks ADD CONSTRAINT tasks_program_id_fkey
            FOREIGN KEY (program_id) REFERENCES programs NOT VALID;
    END IF;
END $$;

-- Only scheduled rows live in this index, so taking a task costs the same
-- however many finished tasks there are; led by run_after, so tasks waiting
-- for a later retry are never scanned past to find a runnable one.
CREATE INDEX IF NOT EXISTS tasks_runnable_idx ON tasks (run_after, task_id) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS tasks_running_idx ON tasks (task_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_program_id_idx ON tasks (program_id);

-- One row per finished attempt: written by the transition that ends it, so a
-- task's history and its status always change in the same statement.
CREATE TABLE IF NOT EXISTS task_attempts (
    task_id   bigint NOT NULL REFERENCES tasks ON DELETE CASCADE,
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
-- row, so the history always holds sum(attempt_count) finished attempts.
INSERT INTO task_attempts (task_id, attempt, started, finished, outcome, error, pid)
SELECT t.task_id, 1, t.started, coalesce(t.finished, t.started, now()), t.status,
       CASE WHEN t.status = 'error' THEN t.result END, t.pid
FROM tasks t
WHERE t.status IN ('finished', 'error') AND t.attempt_count = 1
ON CONFLICT DO NOTHING;
