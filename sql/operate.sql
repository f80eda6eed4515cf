-- retask: operating the queue by hand. Retry tasks that ended in error or were
-- cancelled, cancel scheduled or running ones, delete ended ones, prune those
-- ended long ago; and the error code that ends a task at once. Each is callable
-- inside a caller's transaction. They run as their owner (SECURITY DEFINER, and
-- no program runs in them), so retask_admin needs no write on any table.
--
-- A running task's row is locked by its worker while the program runs, so
-- nothing here writes it: cancel leaves a request (retask.cancel_requests) and
-- notifies channel `retask_cancel` with `retask.tasks:<id>`; the worker holding the
-- task cancels its statement, and the attempt is recorded 'cancelled'
-- (record_attempts, state_machine.sql). Nothing here waits for a worker.

-- Raised by a program, ends its task 'error' at once, with no further attempt:
-- the SQLSTATE RT001 (`RAISE EXCEPTION '...' USING ERRCODE = 'RT001'` does the
-- same without this function).
CREATE FUNCTION retask.fail_permanently(message text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '%', coalesce(message, 'failed permanently') USING ERRCODE = 'RT001';
END
$$;

-- The tasks an operation names: task_ids, or every task of program_id in one
-- of `statuses` (those the operation acts on, or the one asked for). Ids that
-- do not exist are refused before anything changes (no_data_found); a filter
-- status the operation does not act on, or naming both ids and a filter, or
-- neither, is refused too (invalid_parameter_value).
CREATE FUNCTION retask.named_tasks(
    task_ids bigint[], program_id bigint, status text, statuses text[], verb text)
RETURNS bigint[] LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing bigint[];
BEGIN
    IF task_ids IS NOT NULL AND (program_id IS NOT NULL OR status IS NOT NULL) THEN
        RAISE EXCEPTION '% takes task ids or a program and status, not both', verb
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF task_ids IS NOT NULL THEN
        missing := ARRAY(SELECT DISTINCT u.id FROM unnest(task_ids) u(id)
                         WHERE NOT EXISTS (SELECT FROM retask.tasks t WHERE t.task_id = u.id)
                         ORDER BY u.id);
        IF cardinality(missing) > 0 THEN
            RAISE EXCEPTION '% %', CASE WHEN cardinality(missing) = 1 THEN 'task' ELSE 'tasks' END,
                array_to_string(missing[1:10], ', ')
                || CASE WHEN cardinality(missing) > 10 THEN format(' and %s more', cardinality(missing) - 10)
                        ELSE '' END
                || CASE WHEN cardinality(missing) = 1 THEN ' does not exist' ELSE ' do not exist' END
                USING ERRCODE = 'no_data_found', HINT = 'retask status lists the newest tasks';
        END IF;
        RETURN ARRAY(SELECT DISTINCT u.id FROM unnest(task_ids) u(id) ORDER BY u.id);
    END IF;
    IF program_id IS NULL AND status IS NULL THEN
        RAISE EXCEPTION '% needs task ids, or a program or a status', verb
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF status IS NOT NULL AND status <> ALL (statuses) THEN
        RAISE EXCEPTION '% acts on % tasks, not %', verb, array_to_string(statuses, ' or '), status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF program_id IS NOT NULL AND NOT EXISTS (SELECT FROM retask.programs p WHERE p.program_id = named_tasks.program_id) THEN
        RAISE EXCEPTION 'program % does not exist', program_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN ARRAY(SELECT t.task_id FROM retask.tasks t
                 WHERE (named_tasks.program_id IS NULL OR t.program_id = named_tasks.program_id)
                   AND t.status = ANY (CASE WHEN named_tasks.status IS NULL THEN statuses
                                           ELSE ARRAY[named_tasks.status] END)
                 ORDER BY t.task_id);
END
$$;

-- Schedules again tasks that ended 'error' or 'cancelled', with a fresh budget
-- of attempts: `max_attempts` more (default the task's own budget, what it was
-- given when queued or last retried), numbered on from those it used, so the
-- next run of a task that failed 3 of 3 is attempt 4 of 6. Its history stays;
-- its result says it was retried. Tasks are named by id, or by program and
-- status (default both). One row per task named: outcome 'retried' (status
-- now 'scheduled') or 'skipped' (another status, or another task with its key
-- is scheduled or running), with the reason.
CREATE FUNCTION retask.retry_tasks(
    task_ids bigint[] DEFAULT NULL, program_id bigint DEFAULT NULL, with_status text DEFAULT NULL,
    max_attempts integer DEFAULT NULL)
RETURNS TABLE (task_id bigint, status text, outcome text, reason text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := retask.named_tasks(task_ids, program_id, with_status, ARRAY['error', 'cancelled'], 'retry');
BEGIN
    IF retry_tasks.max_attempts IS NOT NULL THEN
        PERFORM retask.check_retry_policy(retry_tasks.max_attempts, NULL, NULL, NULL);
    END IF;
    -- one statement: `t` below is each task as it was, `d` as it is now
    RETURN QUERY
    WITH candidates AS (
        SELECT t.task_id,
               -- of the tasks of one key, one may be scheduled or running at a time
               t.key IS NULL OR (row_number() OVER (PARTITION BY t.program_id, t.key ORDER BY t.task_id) = 1
                                 AND NOT EXISTS (SELECT FROM retask.tasks o
                                                 WHERE o.program_id = t.program_id AND o.key = t.key
                                                   AND o.status IN ('scheduled', 'running'))) AS free
        FROM retask.tasks t
        WHERE t.task_id = ANY (ids) AND t.status IN ('error', 'cancelled')
    ), retried AS (
        UPDATE retask.tasks t
        SET status = 'scheduled',
            max_attempts = t.attempt_count
                           + coalesce(retry_tasks.max_attempts, t.max_attempts - t.retried_after),
            retried_after = t.attempt_count,
            run_after = clock_timestamp(),
            lease_expires_at = NULL,
            result = format('attempt %s of %s', t.attempt_count,
                            t.attempt_count + coalesce(retry_tasks.max_attempts,
                                                       t.max_attempts - t.retried_after))
                     || E'\n'
                     || format('retried by %s after attempt %s (it had ended %s)',
                               session_user, t.attempt_count, t.status)
        FROM candidates c
        WHERE t.task_id = c.task_id AND c.free AND t.status IN ('error', 'cancelled')
        RETURNING t.task_id, t.status
    ), cleared AS (
        DELETE FROM retask.cancel_requests r USING retried d WHERE r.task_id = d.task_id
    )
    SELECT t.task_id, coalesce(d.status, t.status),
           CASE WHEN d.task_id IS NOT NULL THEN 'retried' ELSE 'skipped' END,
           CASE WHEN d.task_id IS NOT NULL THEN NULL
                WHEN t.status IN ('error', 'cancelled')
                THEN format('another task with key %s is scheduled or running', t.key)
                ELSE format('it is %s; only error or cancelled tasks are retried', t.status) END
    FROM retask.tasks t LEFT JOIN retried d ON d.task_id = t.task_id
    WHERE t.task_id = ANY (ids)
    ORDER BY t.task_id;
    IF FOUND THEN
        PERFORM retask.wake_workers();
    END IF;
END
$$;

-- Ends, as 'cancelled', those of tasks `ids` that are scheduled, skipping
-- rows another transaction holds (a worker taking them); returns their ids.
-- `who` is named in their result.
CREATE FUNCTION retask.cancel_scheduled(ids bigint[], who text) RETURNS bigint[]
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
    WITH picked AS (
        SELECT t.task_id FROM retask.tasks t
        WHERE t.task_id = ANY (ids) AND t.status = 'scheduled'
        ORDER BY t.task_id
        FOR UPDATE SKIP LOCKED
    ), cancelled AS (
        UPDATE retask.tasks t
        SET status = 'cancelled',
            finished = clock_timestamp(),
            lease_expires_at = NULL,
            result = format('attempt %s of %s', t.attempt_count, t.max_attempts) || E'\n'
                     || format('cancelled by %s while scheduled', who)
        FROM picked p
        WHERE t.task_id = p.task_id
        RETURNING t.task_id
    ), cleared AS (
        DELETE FROM retask.cancel_requests r USING cancelled c WHERE r.task_id = c.task_id
    )
    SELECT coalesce(array_agg(c.task_id), '{}') FROM cancelled c
$$;

-- Cancels tasks: a scheduled one ends 'cancelled' now and never runs; a
-- running one is asked to stop (a row in retask.cancel_requests, and a NOTIFY
-- on `retask_cancel`): its worker cancels the program at once, and however
-- the attempt ends short of finishing, it is recorded 'cancelled', with no
-- retry. One that finishes before the request reaches it stays 'finished'.
-- Tasks are named by id, or by program and status (default both). One row per
-- task named: outcome 'cancelled', 'requested' (it is running), or 'skipped'
-- (it had ended), with the reason. Rows a worker holds are never waited for.
CREATE FUNCTION retask.cancel_tasks(
    task_ids bigint[] DEFAULT NULL, program_id bigint DEFAULT NULL, with_status text DEFAULT NULL)
RETURNS TABLE (task_id bigint, status text, outcome text, reason text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := retask.named_tasks(task_ids, program_id, with_status, ARRAY['scheduled', 'running'], 'cancel');
    who text := session_user;
    done bigint[];
    asked bigint[];
BEGIN
    done := retask.cancel_scheduled(ids, who);
    -- running ones, and scheduled ones a worker is taking right now
    WITH requested AS (
        INSERT INTO retask.cancel_requests AS r (task_id, requested_by)
        SELECT t.task_id, who FROM retask.tasks t
        WHERE t.task_id = ANY (ids) AND t.status IN ('scheduled', 'running')
        ORDER BY t.task_id
        ON CONFLICT ON CONSTRAINT cancel_requests_pkey DO UPDATE SET requested_by = excluded.requested_by
        RETURNING r.task_id
    )
    SELECT coalesce(array_agg(q.task_id), '{}') INTO asked FROM requested q;
    -- one whose attempt failed meanwhile is scheduled again: it ends now
    done := done || retask.cancel_scheduled(asked, who);
    -- the payload names the table (install rewrites it for another schema),
    -- so a worker of another schema in this database ignores it
    PERFORM pg_notify('retask_cancel', 'retask.tasks:' || t.task_id)
    FROM retask.tasks t WHERE t.task_id = ANY (asked) AND t.status IN ('scheduled', 'running');
    RETURN QUERY
    SELECT t.task_id, t.status,
           CASE WHEN d.id IS NOT NULL THEN 'cancelled'
                WHEN q.id IS NOT NULL AND t.status IN ('scheduled', 'running') THEN 'requested'
                ELSE 'skipped' END,
           CASE WHEN d.id IS NULL AND q.id IS NULL
                THEN format('it is %s; only scheduled or running tasks are cancelled', t.status) END
    FROM retask.tasks t
    LEFT JOIN unnest(done) d(id) ON d.id = t.task_id
    LEFT JOIN unnest(asked) q(id) ON q.id = t.task_id
    WHERE t.task_id = ANY (ids)
    ORDER BY t.task_id;
END
$$;

-- Deletes ended tasks (finished, error or cancelled) and their history. One
-- row per task named: outcome 'deleted', or 'skipped' (it is scheduled or
-- running: cancel it first), with the reason.
CREATE FUNCTION retask.delete_tasks(task_ids bigint[])
RETURNS TABLE (task_id bigint, status text, outcome text, reason text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := retask.named_tasks(coalesce(task_ids, '{}'), NULL, NULL, NULL, 'delete');
BEGIN
    -- one statement: `deleted` are those it removed; the rest were skipped
    RETURN QUERY
    WITH deleted AS (
        DELETE FROM retask.tasks t
        WHERE t.task_id = ANY (ids) AND t.status IN ('finished', 'error', 'cancelled')
        RETURNING t.task_id
    ), cleared AS (
        DELETE FROM retask.cancel_requests r USING deleted d WHERE r.task_id = d.task_id
    )
    SELECT t.task_id, t.status,
           CASE WHEN d.task_id IS NOT NULL THEN 'deleted' ELSE 'skipped' END,
           CASE WHEN d.task_id IS NULL
                THEN format('it is %s; cancel it first, or let it end', t.status) END
    FROM retask.tasks t LEFT JOIN deleted d ON d.task_id = t.task_id
    WHERE t.task_id = ANY (ids)
    ORDER BY t.task_id;
END
$$;

-- Deletes, with their history, up to batch_size tasks that ended (in one of
-- `statuses`, default all three ended ones) longer ago than older_than, oldest
-- first; returns how many. Rows another transaction holds are skipped, never
-- waited for. Call it again until it returns fewer than batch_size: each call
-- is a short transaction (retask prune, and work --retention, do).
CREATE FUNCTION retask.prune_tasks(
    older_than interval, statuses text[] DEFAULT NULL, batch_size integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    wanted text[] := coalesce(statuses, ARRAY['finished', 'error', 'cancelled']);
    pruned integer;
BEGIN
    IF older_than IS NULL OR older_than < '0' THEN
        RAISE EXCEPTION 'prune needs an age of 0 or more, got %', coalesce(older_than::text, 'none')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(wanted) = 0 OR EXISTS (SELECT FROM unnest(wanted) s
                                          WHERE s IS NULL OR s NOT IN ('finished', 'error', 'cancelled')) THEN
        RAISE EXCEPTION 'prune removes finished, error or cancelled tasks, not %', array_to_string(wanted, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'prune''s batch size must be 1 to 100000, got %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH doomed AS (
        -- the literal list lets tasks_ended_idx serve whatever `wanted` is
        SELECT t.task_id FROM retask.tasks t
        WHERE t.status IN ('finished', 'error', 'cancelled') AND t.status = ANY (wanted)
          AND t.finished < now() - older_than
        ORDER BY t.finished
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), deleted AS (
        DELETE FROM retask.tasks t USING doomed d WHERE t.task_id = d.task_id
        RETURNING t.task_id
    ), cleared AS (
        DELETE FROM retask.cancel_requests r USING deleted d WHERE r.task_id = d.task_id
    )
    SELECT count(*)::integer INTO pruned FROM deleted;
    RETURN pruned;
END
$$;
