-- retask 0003: what operating a queue needs. A task may be cancelled; it has a
-- priority (higher first) and may carry a unique key; a program may be paused
-- and has its own timeout and default priority; schedules enqueue a program
-- on a cron expression.

-- 'cancelled': a task stopped by hand, and the attempt a cancel cut short.
-- The status and outcome checks are replaced whatever they were named (a
-- course-era table has its own). A retry by hand gives a task a fresh budget
-- of attempts on top of those it used, so a task's max_attempts may pass 100
-- (a budget given by a person is still 1 to 100).
DO $$
DECLARE
    check_ record;
BEGIN
    FOR check_ IN
        SELECT c.conname, c.conrelid::regclass AS rel
        FROM pg_catalog.pg_constraint c
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.contype = 'c' AND cardinality(c.conkey) = 1
          AND ((c.conrelid = 'retask.tasks'::regclass AND a.attname IN ('status', 'max_attempts'))
               OR (c.conrelid = 'retask.task_attempts'::regclass AND a.attname = 'outcome'))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', check_.rel, check_.conname);
    END LOOP;
END $$;
ALTER TABLE retask.tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('scheduled', 'running', 'finished', 'error', 'cancelled'));
ALTER TABLE retask.tasks ADD CONSTRAINT tasks_max_attempts_check
    CHECK (max_attempts BETWEEN 1 AND 1000000);
ALTER TABLE retask.task_attempts ADD CONSTRAINT task_attempts_outcome_check
    CHECK (outcome IN ('finished', 'error', 'lost', 'cancelled'));

ALTER TABLE retask.programs
    -- workers take no new task of a paused program
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    -- NULL: the worker's --task-timeout
    ADD COLUMN timeout interval CHECK (timeout > '0' AND timeout <= '1 day'),
    -- what a task of this program gets unless enqueued with its own
    ADD COLUMN priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000000 AND 1000000);

ALTER TABLE retask.tasks
    ADD COLUMN priority integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000000 AND 1000000),
    -- while a task with this key is scheduled or running, enqueueing the same
    -- program and key returns that task
    ADD COLUMN key text CHECK (length(key) BETWEEN 1 AND 1000),
    -- the attempts it had used when last retried by hand: its budget is
    -- max_attempts - retried_after
    ADD COLUMN retried_after integer NOT NULL DEFAULT 0 CHECK (retried_after >= 0);

-- Take order: priority (higher first), then run_after, then id.
DROP INDEX IF EXISTS retask.tasks_runnable_idx;
CREATE INDEX tasks_runnable_idx ON retask.tasks (priority DESC, run_after, task_id)
    WHERE status = 'scheduled';
CREATE UNIQUE INDEX tasks_key_idx ON retask.tasks (program_id, key)
    WHERE key IS NOT NULL AND status IN ('scheduled', 'running');
-- `status --program`, and retry or cancel by program and status
CREATE INDEX tasks_program_status_idx ON retask.tasks (program_id, status, task_id);
-- prune: ended tasks by when they ended
CREATE INDEX tasks_ended_idx ON retask.tasks (finished)
    WHERE status IN ('finished', 'error', 'cancelled');

-- A task someone asked to stop while it ran (or was being taken). No foreign
-- key: checking one would wait for the lock its worker holds while the program
-- runs. The attempt's recording (record_attempts) ends the task 'cancelled'
-- and removes the request; deleting a task removes its request too.
CREATE TABLE retask.cancel_requests (
    task_id      bigint PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    requested_by text NOT NULL DEFAULT session_user
);

-- A program enqueued on a cron expression. next_run_at is the next slot to
-- enqueue: a worker that finds it due moves it on (compare and set, so each
-- slot is enqueued once however many workers look) and enqueues the task in
-- the same transaction. NULL until a worker first reads the cron (a schedule
-- written in SQL, which cannot read cron itself).
CREATE TABLE retask.schedules (
    name         text PRIMARY KEY CHECK (name ~ '\S' AND length(name) <= 200),
    program_id   bigint NOT NULL REFERENCES retask.programs,
    cron         text NOT NULL,
    timezone     text NOT NULL DEFAULT 'UTC',
    params       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_task_id bigint,
    created      timestamptz NOT NULL DEFAULT now()
);
-- what each worker's tick asks: which schedules are due, and when the next is
CREATE INDEX schedules_next_run_idx ON retask.schedules (next_run_at);
