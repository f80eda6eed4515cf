-- retask 0003: the task state machine. Every change of a task's status is one
-- of these functions, each a single atomic statement (or a short PL/pgSQL body
-- around one), safe under any number of concurrent workers.
--
--   enqueue ─▶ scheduled ──take──▶ running ──finish──▶ finished
--                 ▲                  │
--                 └── attempts left ─┤ fail / rescue (worker lost)
--                                    └── no attempts left ──▶ error
--
-- A completion names the attempt it completes; if the task is no longer
-- running that attempt (it was rescued, or rescued and taken again), the
-- completion changes nothing and returns NULL.

-- How long a failed attempt waits before the next one. `attempt` is the number
-- of the attempt that failed. Exponential backoff uses "equal jitter": half the
-- delay is fixed, half random, so retries of tasks that failed together spread.
CREATE FUNCTION retry_delay_after(attempt integer, backoff text, delay interval, delay_max interval)
RETURNS interval LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT CASE backoff
        WHEN 'exponential' THEN
            -- in seconds: the doubled interval itself could overflow before the cap
            least(extract(epoch FROM delay_max),
                  extract(epoch FROM delay) * power(2, least(attempt - 1, 30)))
            * (0.5 + random() / 2) * interval '1 second'
        ELSE delay
    END
$$;

-- Takes up to `max_tasks` runnable tasks, longest runnable first (by run_after,
-- then id), and starts an attempt of each. `lease` (for workers outside the
-- database) bounds how long a task may stay running unrenewed; `remote` also
-- takes tasks that name a host.
CREATE FUNCTION take_tasks(
    max_tasks integer, worker text DEFAULT NULL, lease interval DEFAULT NULL,
    remote boolean DEFAULT true)
RETURNS SETOF tasks LANGUAGE sql VOLATILE AS $$
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
    RETURNING t.*
$$;

-- The seed's single take, used by process_tasks(): local tasks only, since the
-- in-database worker cannot reach another host.
CREATE FUNCTION take_task(OUT task tasks) LANGUAGE sql VOLATILE AS $$
    SELECT * FROM take_tasks(1, 'process_tasks', NULL, false)
$$;

-- Ends many attempts as finished in one statement; finish_task is its
-- single-task case, so finishing has one implementation. Returns the ids of the
-- tasks it finished; a task not running the given attempt any more is left
-- alone and not returned. `started_at`/`finished_at` (optional) are when each
-- attempt really ran: in a batch, that is not when the batch was taken or ended.
CREATE FUNCTION finish_tasks(
    task_ids bigint[], attempts integer[], results text[],
    started_at timestamptz[] DEFAULT NULL, finished_at timestamptz[] DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql VOLATILE AS $$
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
    SELECT d.task_id FROM done d
$$;

-- Ends attempt `attempt` of a task as finished. Returns 'finished', or NULL
-- when the task is not running that attempt any more (nothing changes then).
CREATE FUNCTION finish_task(task_id bigint, attempt integer, result text)
RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'finished'::text
    FROM finish_tasks(ARRAY[finish_task.task_id], ARRAY[finish_task.attempt],
                      ARRAY[finish_task.result])
$$;

-- Ends attempt `attempt` of a task as failed: back to 'scheduled' after the
-- retry delay while attempts are left, else 'error'. `outcome` is 'error' for a
-- failure the program raised, 'lost' for a worker that vanished. Returns the
-- new status, or NULL when the task is not running that attempt any more.
-- `started_at`/`finished_at` as in finish_tasks.
CREATE FUNCTION fail_task(
    task_id bigint, attempt integer, error text, context text DEFAULT NULL,
    outcome text DEFAULT 'error', started_at timestamptz DEFAULT NULL,
    finished_at timestamptz DEFAULT NULL)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    failed tasks;
BEGIN
    UPDATE tasks t
    SET status = CASE WHEN t.attempt_count < t.max_attempts THEN 'scheduled' ELSE 'error' END,
        started = coalesce(fail_task.started_at, t.started),
        finished = coalesce(fail_task.finished_at, clock_timestamp()),
        lease_expires_at = NULL,
        run_after = CASE WHEN t.attempt_count < t.max_attempts
                         THEN clock_timestamp()
                              + retry_delay_after(t.attempt_count, t.retry_backoff, t.retry_delay, t.retry_delay_max)
                         ELSE t.run_after END,
        result = format('attempt %s of %s', t.attempt_count, t.max_attempts)
                 || E'\n' || coalesce(fail_task.error, 'unknown error')
                 || coalesce(E'\n' || nullif(fail_task.context, ''), '')
    WHERE t.task_id = fail_task.task_id
      AND t.status = 'running' AND t.attempt_count = fail_task.attempt
    RETURNING t.* INTO failed;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_attempts (task_id, attempt, started, finished, outcome, error, context, pid, worker)
    VALUES (failed.task_id, failed.attempt_count, failed.started, failed.finished,
            fail_task.outcome, fail_task.error, nullif(fail_task.context, ''), failed.pid, failed.worker);
    IF failed.status = 'scheduled' AND failed.run_after <= clock_timestamp() THEN
        PERFORM pg_notify('retask_tasks', '');
    END IF;
    RETURN failed.status;
END
$$;

-- The seed's completion: 'finished' or 'error', for the attempt the task row
-- carries. An error goes through the retry rule like any failure.
CREATE FUNCTION complete_task(task tasks, status text, result text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    CASE complete_task.status
        WHEN 'finished' THEN
            PERFORM finish_task(task.task_id, task.attempt_count, result);
        WHEN 'error' THEN
            PERFORM fail_task(task.task_id, task.attempt_count, result);
        ELSE
            RAISE EXCEPTION 'a task completes as finished or error, not %', complete_task.status
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;

-- Fails, as 'lost', every running attempt whose holder is gone: its backend no
-- longer exists, or its lease ran out. The normal retry rule then applies.
CREATE FUNCTION rescue_lost_tasks() RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lost record;
    rescued integer := 0;
BEGIN
    FOR lost IN
        SELECT t.task_id, t.attempt_count, t.pid, t.worker,
               t.lease_expires_at < now() AS expired
        FROM tasks t
        WHERE t.status = 'running'
          AND (t.lease_expires_at < now()
               OR t.pid IS NULL
               OR NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = t.pid))
        FOR UPDATE OF t SKIP LOCKED
    LOOP
        PERFORM fail_task(lost.task_id, lost.attempt_count,
            CASE WHEN lost.expired
                 THEN format('worker lost: %s did not renew its lease', coalesce(lost.worker, 'the worker'))
                 ELSE format('worker lost: backend %s is gone', coalesce(lost.pid::text, '(none)'))
            END,
            NULL, 'lost');
        rescued := rescued + 1;
    END LOOP;
    RETURN rescued;
END
$$;

-- Ends many attempts in one call: the worker runs a batch of tasks in one
-- transaction and records all their outcomes here, just before it commits.
-- Element i completes attempt attempts[i] of task task_ids[i]:
--   outcomes[i] = 'finished' (or NULL with errors[i] NULL): finished, with results[i];
--   outcomes[i] = 'error' or 'lost' (or NULL with an error): fail_task with
--   errors[i] and contexts[i], so fail_task's retry rule decides what follows.
-- started_at[i]/finished_at[i] say when the attempt really ran (NULL: unknown).
-- results, errors, contexts, outcomes and the times are NULL or as long as task_ids.
-- Returns each task's new status in input order, NULL where the task was not
-- running that attempt any more (nothing changed for it).
CREATE FUNCTION complete_tasks(
    task_ids bigint[], attempts integer[], results text[], errors text[], contexts text[],
    outcomes text[] DEFAULT NULL, started_at timestamptz[] DEFAULT NULL,
    finished_at timestamptz[] DEFAULT NULL)
RETURNS text[] LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer := coalesce(cardinality(task_ids), 0);
    ends text[];
    done bigint[];
    bad text;
BEGIN
    IF coalesce(cardinality(attempts), 0) <> n
       OR coalesce(cardinality(results), n) <> n OR coalesce(cardinality(errors), n) <> n
       OR coalesce(cardinality(contexts), n) <> n OR coalesce(cardinality(outcomes), n) <> n
       OR coalesce(cardinality(started_at), n) <> n OR coalesce(cardinality(finished_at), n) <> n THEN
        RAISE EXCEPTION 'complete_tasks needs arrays as long as task_ids (%), or NULL', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT o INTO bad FROM unnest(outcomes) o
    WHERE o IS NOT NULL AND o NOT IN ('finished', 'error', 'lost') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'an attempt ends as finished, error or lost, not %', bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ends := ARRAY(
        SELECT coalesce(outcomes[i], CASE WHEN errors[i] IS NULL THEN 'finished' ELSE 'error' END)
        FROM generate_series(1, n) i ORDER BY i);
    -- the finished ones in one statement; the failed ones one by one through fail_task
    done := ARRAY(
        SELECT finish_tasks(
            ARRAY(SELECT task_ids[i] FROM generate_series(1, n) i WHERE ends[i] = 'finished' ORDER BY i),
            ARRAY(SELECT attempts[i] FROM generate_series(1, n) i WHERE ends[i] = 'finished' ORDER BY i),
            ARRAY(SELECT results[i] FROM generate_series(1, n) i WHERE ends[i] = 'finished' ORDER BY i),
            ARRAY(SELECT started_at[i] FROM generate_series(1, n) i WHERE ends[i] = 'finished' ORDER BY i),
            ARRAY(SELECT finished_at[i] FROM generate_series(1, n) i WHERE ends[i] = 'finished' ORDER BY i)));
    RETURN ARRAY(
        SELECT CASE WHEN ends[i] = 'finished'
                    THEN CASE WHEN task_ids[i] = ANY (done) THEN 'finished' END
                    ELSE fail_task(task_ids[i], attempts[i], errors[i], contexts[i], ends[i],
                                   started_at[i], finished_at[i])
               END
        FROM generate_series(1, n) i ORDER BY i);
END
$$;

-- Extends the lease of the attempts a worker still holds, and records the
-- renewing backend as their holder: after the worker reconnects, its tasks point
-- at a backend that exists again. Rows another transaction has locked are
-- skipped rather than waited for: the worker's own execution transaction locks
-- the tasks it runs, and the rescuer cannot take those anyway. Returns how many
-- leases were renewed.
CREATE FUNCTION renew_leases(task_ids bigint[], attempts integer[], lease interval)
RETURNS integer LANGUAGE sql VOLATILE AS $$
    WITH held AS (
        SELECT t.task_id
        FROM tasks t
        JOIN unnest(renew_leases.task_ids, renew_leases.attempts) AS u(task_id, attempt)
          ON t.task_id = u.task_id AND t.attempt_count = u.attempt
        WHERE t.status = 'running'
        ORDER BY t.task_id
        FOR UPDATE OF t SKIP LOCKED
    ), renewed AS (
        UPDATE tasks t
        SET lease_expires_at = now() + renew_leases.lease,
            pid = pg_backend_pid()
        FROM held
        WHERE t.task_id = held.task_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM renewed
$$;

-- True while some task may still need a worker: scheduled (now or later) or
-- running. `retask work --drain` stops once this is false. Two EXISTS, so each
-- uses its partial index.
CREATE FUNCTION tasks_pending() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT FROM tasks WHERE status = 'scheduled')
        OR EXISTS (SELECT FROM tasks WHERE status = 'running')
$$;
