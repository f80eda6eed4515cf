-- retask: the task state machine. Every change of a task's status is one of
-- these functions, each one atomic statement (or a short PL/pgSQL body around
-- one), safe under any number of concurrent workers. Only take_tasks,
-- record_attempts and release_tasks write a task's status; everything that
-- ends an attempt (a batch run in the database, a remote run, a rescue,
-- process_tasks, the course's complete_task) records it through
-- record_attempts. release_tasks undoes a take the database could not run or
-- record through no fault of the task: that attempt never counted. By hand
-- (operate.sql), retry_tasks schedules an ended task again and cancel_tasks
-- ends a scheduled one; a running one it only asks to stop.
--
--   enqueue ─▶ scheduled ──take──▶ running ──finished──▶ finished
--               ▲  ▲  │              │
--               │  └──┼ attempts left┤ error / lost (worker gone) / timed out
--               │     │              ├── no attempts left, or RT001 ──▶ error
--               │     │              └── cancel requested ──▶ cancelled
--               │     └── cancel ──────────────────────────▶ cancelled
--               └────── release ─────┘ not the task's fault: the take is undone
--   error, cancelled ──retry (by hand: a fresh budget of attempts)──▶ scheduled
--
-- An ending names the attempt it ends; if the task is no longer running that
-- attempt (it was rescued, or rescued and taken again), nothing changes for it.

-- How long a failed attempt waits before the next one. `attempt` is the number
-- of the attempt that failed. Exponential backoff uses "equal jitter": half the
-- delay is fixed, half random, so retries of tasks that failed together spread.
CREATE FUNCTION retask.retry_delay_after(attempt integer, backoff text, delay interval, delay_max interval)
RETURNS interval LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE backoff
        WHEN 'exponential' THEN
            -- in seconds: the doubled interval itself could overflow before the cap
            least(extract(epoch FROM delay_max),
                  extract(epoch FROM delay) * power(2, least(attempt - 1, 30)))
            * (0.5 + random() / 2) * interval '1 second'
        ELSE delay
    END
$$;

-- Locks, for the caller's transaction, up to `max_tasks` runnable tasks,
-- highest priority first, then longest runnable (by run_after, then id): the
-- order of tasks_runnable_idx. Skips rows others have locked and tasks of
-- paused programs; with `remote` false, tasks that name a host. With `fast`
-- (programs a worker runs the fast way, fast_programs), only tasks the fast
-- path runs (`fast_only`: local ones of those programs), or only those it
-- leaves (remote tasks, and tasks of every other program). Returns their ids
-- in that order.
-- It reads the index one priority at a time, highest first: with the priority
-- fixed, the index is in run_after order, so the scan stops at the first task
-- not yet due. In one scan over all priorities `run_after <= now()` bounds
-- nothing, and a take read past every task scheduled for later (1M of them:
-- 13 ms instead of 0.3). The scan is planned anew on every call (EXECUTE),
-- for the priority and LIMIT it gets: a cached generic plan, made while a
-- queue is short, bitmap-scans and sorts every runnable task of the priority
-- once it is long (a million: 400 ms a take).
CREATE FUNCTION retask.pick_tasks(
    max_tasks integer, remote boolean DEFAULT true, fast bigint[] DEFAULT NULL,
    fast_only boolean DEFAULT false)
RETURNS bigint[] LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    paused bigint[] := ARRAY(SELECT p.program_id FROM retask.programs p WHERE p.paused);
    -- ORDER BY and LIMIT rather than max(): a scan that stops at its first entry
    level integer := (SELECT s.priority FROM retask.tasks s WHERE s.status = 'scheduled'
                      ORDER BY s.priority DESC LIMIT 1);
    picked bigint[] := '{}';
    more bigint[];
BEGIN
    WHILE level IS NOT NULL AND cardinality(picked) < pick_tasks.max_tasks LOOP
        EXECUTE 'SELECT ARRAY(
                     SELECT s.task_id FROM retask.tasks s
                     WHERE s.status = ''scheduled'' AND s.priority = $1 AND s.run_after <= now()
                       AND ($2 OR s.host IS NULL) AND s.program_id <> ALL ($3)
                       AND ($5::bigint[] IS NULL
                            OR CASE WHEN $6 THEN s.host IS NULL AND s.program_id = ANY ($5)
                                    ELSE s.host IS NOT NULL OR s.program_id <> ALL ($5) END)
                     ORDER BY s.run_after, s.task_id
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED)'
            INTO more
            USING level, pick_tasks.remote, paused, pick_tasks.max_tasks - cardinality(picked),
                  pick_tasks.fast, pick_tasks.fast_only;
        picked := picked || more;
        EXIT WHEN cardinality(picked) >= pick_tasks.max_tasks;
        level := (SELECT s.priority FROM retask.tasks s
                  WHERE s.status = 'scheduled' AND s.priority < level
                  ORDER BY s.priority DESC LIMIT 1);
    END LOOP;
    RETURN picked;
END
$$;

-- Of the programs a worker found quick (`quick`: their attempts typically
-- take under 50 ms), those it runs the fast way (run_next_tasks): all but
-- those with a timeout of their own, as a fast batch is one statement under
-- one timeout.
CREATE FUNCTION retask.fast_programs(quick bigint[]) RETURNS bigint[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT q FROM unnest(fast_programs.quick) q
                 WHERE NOT EXISTS (SELECT FROM retask.programs p
                                   WHERE p.program_id = q AND p.timeout IS NOT NULL))
$$;

-- Takes up to `max_tasks` runnable tasks in the order of pick_tasks and starts
-- an attempt of each, committed with the caller's transaction: the careful
-- path, where a task is `running` while it runs. `lease` (for workers outside
-- the database) bounds how long a task may stay running unrenewed; `remote`
-- also takes tasks that name a host. With `quick` (the programs a worker
-- found quick), only those the fast path leaves (see fast_programs). With `task_ids`,
-- only those of them still runnable (and not of a paused program). PL/pgSQL: a SQL function that cannot be
-- inlined is planned on every call (a take of 50: 4 ms as SQL, 1.3 ms here).
CREATE FUNCTION retask.take_tasks(
    max_tasks integer, worker text DEFAULT NULL, lease interval DEFAULT NULL,
    remote boolean DEFAULT true, quick bigint[] DEFAULT NULL, task_ids bigint[] DEFAULT NULL)
RETURNS SETOF retask.tasks LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    picked bigint[];
BEGIN
    IF take_tasks.task_ids IS NOT NULL THEN
        picked := ARRAY(SELECT s.task_id FROM retask.tasks s
                        WHERE s.task_id = ANY (take_tasks.task_ids) AND s.status = 'scheduled'
                          AND s.run_after <= now() AND (take_tasks.remote OR s.host IS NULL)
                          AND NOT EXISTS (SELECT FROM retask.programs p
                                          WHERE p.program_id = s.program_id AND p.paused)
                        ORDER BY s.task_id
                        LIMIT take_tasks.max_tasks
                        FOR UPDATE SKIP LOCKED);
    ELSE
        picked := retask.pick_tasks(take_tasks.max_tasks, take_tasks.remote,
                                    retask.fast_programs(take_tasks.quick));
    END IF;
    -- most polls find nothing: no statement to plan for that
    IF cardinality(picked) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE retask.tasks t
    SET status = 'running',
        attempt_count = t.attempt_count + 1,
        started = now(),
        finished = NULL,
        pid = pg_backend_pid(),
        worker = take_tasks.worker,
        lease_expires_at = now() + take_tasks.lease
    WHERE t.task_id = ANY (picked)
    RETURNING t.*;
END
$$;

-- Locks, for the caller's transaction, the tasks still running the given
-- attempts, in task_id order, and returns them; a task rescued (and maybe taken
-- again) since is left out. While locked, a task cannot be rescued: the rescuer
-- skips locked rows.
CREATE FUNCTION retask.lock_tasks(task_ids bigint[], attempts integer[])
RETURNS SETOF retask.tasks LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT t.* FROM retask.tasks t
    -- by id (primary key), not by scanning every running task of every worker
    WHERE t.task_id = ANY (lock_tasks.task_ids) AND t.status = 'running'
      AND (t.task_id, t.attempt_count) IN (SELECT * FROM unnest(lock_tasks.task_ids, lock_tasks.attempts))
    ORDER BY t.task_id
    FOR UPDATE;
END
$$;

-- Ends attempts: element i ends attempt attempts[i] of task task_ids[i] as
-- outcomes[i], one of
--   'finished'  with results[i] (the program's rendered output);
--   'error'     the program failed: errors[i], codes[i] (its SQLSTATE) and
--               contexts[i]. A statement timeout (57014 "...statement timeout")
--               is recorded as "timed out after <timeout>";
--   'lost'      the worker stopped or vanished during it: errors[i] says how;
--   'cancelled' stopped on a cancel request (retask.cancel_tasks).
-- A failed or lost attempt sends its task back to 'scheduled' (after the retry
-- delay) while attempts are left, else to 'error'. Two exceptions: an error
-- with SQLSTATE RT001 (retask.fail_permanently) ends its task 'error' at once;
-- and a task someone asked to cancel (retask.cancel_requests) ends
-- 'cancelled', its attempt too, however the attempt ended short of
-- finishing. A task that ends drops its cancel request. started_at[i]/finished_at[i]
-- say when the attempt really ran (NULL: the take's time, and now). Arrays other
-- than task_ids, attempts and outcomes may be NULL. Writes the task and its
-- history row in one statement. Returns, for each task that was running that
-- attempt, its status after, the outcome for the worker's report (finished,
-- retry, error: no attempts left or a permanent error, lost, or cancelled)
-- and the error as recorded; the
-- others are left alone and not returned.
-- With `taking` (a worker's name), the attempts are taken here, in the same
-- update that ends them (run_next_tasks, the fast path): the tasks are 'scheduled',
-- locked by the caller, and attempts[i] is the next attempt of task i; the
-- task records this backend and `taking` as its holder. An attempt is then
-- counted in the same commit as its outcome.
CREATE FUNCTION retask.record_attempts(
    task_ids bigint[], attempts integer[], outcomes text[],
    results text[] DEFAULT NULL, errors text[] DEFAULT NULL, codes text[] DEFAULT NULL,
    contexts text[] DEFAULT NULL, started_at timestamptz[] DEFAULT NULL,
    finished_at timestamptz[] DEFAULT NULL, timeout interval DEFAULT NULL, taking text DEFAULT NULL)
RETURNS TABLE (task_id bigint, status text, outcome text, error text) LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    statuses text[];
    reported text[];
    messages text[];
    wake boolean;
BEGIN
    IF coalesce(cardinality(attempts), 0) <> coalesce(cardinality(task_ids), 0)
       OR coalesce(cardinality(outcomes), 0) <> coalesce(cardinality(task_ids), 0) THEN
        RAISE EXCEPTION 'record_attempts needs as many attempts and outcomes as task_ids'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(outcomes) o
               WHERE o IS NULL OR o NOT IN ('finished', 'error', 'lost', 'cancelled')) THEN
        RAISE EXCEPTION 'an attempt ends as finished, error, lost or cancelled'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH ended AS (
        UPDATE retask.tasks t
        SET status = coalesce(i.final, CASE WHEN i.attempt < t.max_attempts THEN 'scheduled'
                                            ELSE 'error' END),
            attempt_count = i.attempt,
            pid = CASE WHEN record_attempts.taking IS NULL THEN t.pid ELSE pg_backend_pid() END,
            worker = coalesce(record_attempts.taking, t.worker),
            started = coalesce(i.started_at, t.started),
            finished = coalesce(i.finished_at, clock_timestamp()),
            lease_expires_at = NULL,
            run_after = CASE WHEN i.final IS NULL AND i.attempt < t.max_attempts
                             THEN clock_timestamp() + retask.retry_delay_after(
                                      i.attempt, t.retry_backoff, t.retry_delay, t.retry_delay_max)
                             ELSE t.run_after END,
            result = format('attempt %s of %s', i.attempt, t.max_attempts) || E'\n'
                     || CASE WHEN i.outcome = 'finished' THEN coalesce(i.result, '')
                             ELSE coalesce(i.message, 'unknown error')
                                  || coalesce(E'\n' || nullif(i.context, ''), '') END
        FROM (
            SELECT u.*,
                   -- the status the attempt's end decides by itself, the retry rule aside
                   CASE WHEN u.outcome = 'finished' THEN 'finished'
                        WHEN u.outcome = 'cancelled' OR r.task_id IS NOT NULL THEN 'cancelled'
                        WHEN u.outcome = 'error' AND u.code = 'RT001' THEN 'error' END AS final,
                   CASE WHEN u.outcome <> 'finished' AND (u.outcome = 'cancelled' OR r.task_id IS NOT NULL)
                        THEN CASE WHEN u.outcome = 'cancelled' OR u.code = '57014' OR u.error IS NULL
                                  THEN coalesce('cancelled by ' || r.requested_by, 'cancelled')
                                  ELSE u.error || coalesce('; cancelled by ' || r.requested_by, '')
                                       || ', not retried' END
                        WHEN u.code = '57014' AND u.error LIKE '%statement timeout%'
                             AND coalesce(record_attempts.timeout, u.finished_at - u.started_at) IS NOT NULL
                        THEN format('timed out after %s ms', round(extract(epoch FROM
                                 coalesce(record_attempts.timeout, u.finished_at - u.started_at)) * 1000))
                        ELSE u.error END AS message
            FROM unnest(record_attempts.task_ids, record_attempts.attempts, record_attempts.outcomes,
                        record_attempts.results, record_attempts.errors, record_attempts.codes,
                        record_attempts.contexts, record_attempts.started_at, record_attempts.finished_at)
                 AS u(task_id, attempt, outcome, result, error, code, context, started_at, finished_at)
            LEFT JOIN retask.cancel_requests r ON r.task_id = u.task_id
        ) i
        WHERE t.task_id = i.task_id AND t.task_id = ANY (record_attempts.task_ids)
          AND CASE WHEN record_attempts.taking IS NULL
                   THEN t.status = 'running' AND t.attempt_count = i.attempt
                   ELSE t.status = 'scheduled' AND t.attempt_count = i.attempt - 1 END
        RETURNING t.task_id, t.status, t.attempt_count, t.started, t.finished, t.run_after, t.pid,
                  t.worker, CASE WHEN t.status = 'cancelled' THEN 'cancelled' ELSE i.outcome END AS outcome,
                  i.message, nullif(i.context, '') AS context
    ), cleared AS (
        DELETE FROM retask.cancel_requests r USING ended e
        WHERE r.task_id = e.task_id AND e.status <> 'scheduled'
    ), logged AS (
        INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome, error, context, pid, worker)
        SELECT e.task_id, e.attempt_count, e.started, e.finished, e.outcome,
               CASE WHEN e.outcome <> 'finished' THEN e.message END,
               CASE WHEN e.outcome <> 'finished' THEN e.context END, e.pid, e.worker
        FROM ended e
    )
    SELECT array_agg(e.task_id), array_agg(e.status),
           array_agg(CASE WHEN e.outcome = 'lost' THEN 'lost'
                          WHEN e.status = 'scheduled' THEN 'retry'
                          ELSE e.status END),
           array_agg(CASE WHEN e.outcome <> 'finished' THEN e.message END),
           coalesce(bool_or(e.status = 'scheduled' AND e.run_after <= clock_timestamp()), false)
    INTO ids, statuses, reported, messages, wake
    FROM ended e;
    IF wake THEN
        PERFORM retask.wake_workers();
    END IF;
    RETURN QUERY SELECT * FROM unnest(ids, statuses, reported, messages);
END
$$;

-- Gives back attempts attempts[i] of tasks task_ids[i] uncounted: the worker
-- could not run or record them through no fault of their tasks (the history
-- cannot be written, a function is being replaced, the server is read-only).
-- A task still running that attempt goes back to 'scheduled' as it was before
-- that take: its attempt_count one lower, and its holder and times those of
-- its last recorded attempt (none for a first attempt). Nothing is written
-- to the history, and run_after is kept, so the task keeps its place in the
-- queue. Returns how many it gave back; a task no longer running that attempt
-- is left alone.
CREATE FUNCTION retask.release_tasks(task_ids bigint[], attempts integer[])
RETURNS integer LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    released integer;
    wake boolean;
BEGIN
    WITH given AS (
        UPDATE retask.tasks t
        SET status = 'scheduled',
            attempt_count = t.attempt_count - 1,
            started = prev.started,
            finished = prev.finished,
            pid = prev.pid,
            worker = prev.worker,
            lease_expires_at = NULL
        FROM unnest(release_tasks.task_ids, release_tasks.attempts) AS u(task_id, attempt)
        LEFT JOIN retask.task_attempts prev
          ON prev.task_id = u.task_id AND prev.attempt = u.attempt - 1
        WHERE t.task_id = u.task_id AND t.task_id = ANY (release_tasks.task_ids)
          AND t.status = 'running' AND t.attempt_count = u.attempt
        RETURNING t.run_after
    )
    SELECT count(*)::integer, coalesce(bool_or(g.run_after <= clock_timestamp()), false)
    INTO released, wake
    FROM given g;
    IF wake THEN
        PERFORM retask.wake_workers();
    END IF;
    RETURN released;
END
$$;

-- Ends, as lost, every running attempt whose holder is gone: its backend no
-- longer exists, or its lease ran out. The retry rule then applies as for any
-- failure. A worker passes the attempts it holds itself (attempt
-- held_attempts[i] of task held_ids[i]): it is alive and running them, so for
-- those only the lease counts, even if the backend that took them is gone (a
-- terminated connection it has replaced). Returns how many it rescued.
CREATE FUNCTION retask.rescue_lost_tasks(held_ids bigint[] DEFAULT NULL, held_attempts integer[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ids bigint[];
    tries integer[];
    reasons text[];
BEGIN
    SELECT array_agg(t.task_id), array_agg(t.attempt_count),
           array_agg(CASE WHEN t.lease_expires_at < now()
                          THEN format('worker lost: %s did not renew its lease', coalesce(t.worker, 'the worker'))
                          ELSE format('worker lost: backend %s is gone', coalesce(t.pid::text, '(none)'))
                     END)
    INTO ids, tries, reasons
    FROM (SELECT * FROM retask.tasks t
          WHERE t.status = 'running'
            AND (t.lease_expires_at < now()
                 OR ((t.pid IS NULL
                      OR NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.pid = t.pid))
                     AND NOT EXISTS (SELECT FROM unnest(rescue_lost_tasks.held_ids,
                                                        rescue_lost_tasks.held_attempts) AS h(task_id, attempt)
                                     WHERE h.task_id = t.task_id AND h.attempt = t.attempt_count)))
          FOR UPDATE OF t SKIP LOCKED) t;
    RETURN (SELECT count(*)::integer
            FROM retask.record_attempts(ids, tries, ARRAY(SELECT 'lost' FROM unnest(ids)),
                                        errors => reasons));
END
$$;

-- Extends the lease of the attempts a worker still holds, and records the
-- renewing backend as their holder: after the worker reconnects, its tasks point
-- at a backend that exists again. Rows another transaction has locked are
-- skipped rather than waited for: the worker's own execution transaction locks
-- the tasks it runs, and the rescuer cannot take those anyway. Returns how many
-- leases were renewed.
CREATE FUNCTION retask.renew_leases(task_ids bigint[], attempts integer[], lease interval)
RETURNS integer LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
    WITH held AS (
        SELECT t.task_id
        FROM retask.tasks t
        JOIN unnest(renew_leases.task_ids, renew_leases.attempts) AS u(task_id, attempt)
          ON t.task_id = u.task_id AND t.attempt_count = u.attempt
        WHERE t.status = 'running'
        ORDER BY t.task_id
        FOR UPDATE OF t SKIP LOCKED
    ), renewed AS (
        UPDATE retask.tasks t
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
CREATE FUNCTION retask.tasks_pending() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM retask.tasks WHERE status = 'scheduled')
        OR EXISTS (SELECT FROM retask.tasks WHERE status = 'running')
$$;

-- What a worker that has nothing to run is waiting for, which `work --drain`
-- says: scheduled tasks (how many, and when the first is due), those of paused
-- programs, and running ones (its own or other workers'). It counts them all,
-- so a worker asks once per wait, not on every poll.
CREATE FUNCTION retask.tasks_waiting(
    OUT scheduled bigint, OUT next_at timestamptz, OUT paused bigint, OUT running bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) FILTER (WHERE t.status = 'scheduled' AND p.paused IS NOT TRUE),
           min(t.run_after) FILTER (WHERE t.status = 'scheduled' AND p.paused IS NOT TRUE),
           count(*) FILTER (WHERE t.status = 'scheduled' AND p.paused),
           count(*) FILTER (WHERE t.status = 'running')
    FROM retask.tasks t LEFT JOIN retask.programs p ON p.program_id = t.program_id
    WHERE t.status IN ('scheduled', 'running')
$$;
