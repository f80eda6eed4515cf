-- retask: waking workers. A worker with nothing to run sleeps until a
-- notification on channel retask_tasks (or its poll interval). PostgreSQL lets
-- only one notifying transaction commit at a time (a global lock held through
-- the commit's WAL flush), so enqueues do not notify each time: a worker about
-- to sleep says so (worker_idle, which sets retask.wake's flag), and whatever
-- makes a task runnable now (an enqueue, a retry, a release, a resumed
-- program) calls wake_workers, which notifies only while the flag is set, and
-- clears it. One notification wakes every listening worker.
--
-- Why no task waits for a poll: wake_workers takes a shared advisory lock
-- (the key 'retask.wake') after its task is written and keeps it until its
-- transaction ends, and reads the flag in the next statement; if the lock is
-- held exclusively, it notifies without looking (it never waits for it). worker_idle
-- takes the same lock exclusively, sets the flag and then, in a new
-- statement with a new snapshot, looks for a runnable task. The two locks
-- conflict, so one comes first:
--   - the enqueue's: the worker gets its lock only once the enqueue has
--     committed (or rolled back), and its look, later, sees the task;
--   - the worker's: the enqueue cannot have the lock, so it notifies when
--     it commits.
-- The look compares run_after with the clock after the lock, not now(): a
-- task committed just before may be due after the worker's transaction began.
-- Transactions that do not take a new snapshot per statement (repeatable
-- read, serializable) might read the flag from before the worker's commit,
-- so they notify every time, as every enqueue did before.
--
-- Shared advisory locks do not conflict with each other, and cost enqueuers
-- no write: a row lock (FOR KEY SHARE on the flag's row) writes WAL and a
-- multixact per enqueue, and a worker's FOR UPDATE behind it is passed by
-- every new KEY SHARE locker, so it starves while enqueues overlap. The
-- worker only tries the lock (pg_try_advisory_xact_lock does not queue, so
-- enqueuers never wait behind a worker that waits): an enqueue in flight (one
-- early in a long transaction, or a steady stream of them) keeps it from
-- sleeping, and it looks for tasks again every 20 ms instead.

-- Called after making a task runnable now, in the same transaction: notifies
-- the sleeping workers, if any. Runs as its owner (nobody else writes the flag).
CREATE FUNCTION retask.wake_workers() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM pg_notify('retask_tasks', '');
    ELSE
        -- tried, not waited for: anyone may take an advisory lock, and one
        -- held on this key must not stall enqueues. Held (by a worker in
        -- worker_idle, or by anyone else), it may mean a worker is falling
        -- asleep: notify, as every enqueue did before.
        IF NOT pg_try_advisory_xact_lock_shared(hashtextextended('retask.wake', 0)) THEN
            PERFORM pg_notify('retask_tasks', '');
        ELSIF (SELECT w.asleep FROM retask.wake w) THEN
            PERFORM retask.clear_wake();
        END IF;
    END IF;
END
$$;

-- wake_workers found the flag set: clears it and notifies. Of enqueuers that
-- found it at once, one clears it; the others wait for that one to commit,
-- find it cleared, and need not notify: that one's notification wakes the
-- workers, and a worker sleeps again only after a worker_idle, whose lock
-- waits for their commits. Had that one rolled back, the next finds the flag
-- still set. But that one may be an enqueue early in a long transaction:
-- past 5 ms the others stop waiting and notify themselves.
CREATE FUNCTION retask.clear_wake() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5ms' AS $$
BEGIN
    BEGIN
        UPDATE retask.wake w SET asleep = false WHERE w.asleep;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        NULL;
    END;
    PERFORM pg_notify('retask_tasks', '');
END
$$;

-- Called by a worker (listening on retask_tasks) that found nothing to take
-- and is about to sleep: from its commit on, the next task made runnable
-- notifies. Returns true if it must not sleep but look again: a task it could
-- take is runnable now, or for 20 ms enqueues kept it from the lock (while
-- they keep coming, it takes what they queued in batches, 20 ms apart).
-- Tasks other transactions hold locked (being taken, or in a fast batch) do
-- not count: their taker is awake, and runs them, leaves them to its next
-- statement (a fast batch past its budget, or one that died), or gives them
-- back through release_tasks, which wakes.
-- Reads tasks_runnable_idx one priority at a time, as pick_tasks does, so
-- tasks scheduled for later cost nothing.
CREATE FUNCTION retask.worker_idle() RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    due timestamptz;
    paused bigint[];
    level integer;
BEGIN
    FOR try_ IN 1..11 LOOP
        EXIT WHEN pg_try_advisory_xact_lock(hashtextextended('retask.wake', 0));
        IF try_ = 11 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
    UPDATE retask.wake w SET asleep = true WHERE NOT w.asleep;
    due := clock_timestamp();
    paused := ARRAY(SELECT p.program_id FROM retask.programs p WHERE p.paused);
    level := (SELECT s.priority FROM retask.tasks s WHERE s.status = 'scheduled'
              ORDER BY s.priority DESC LIMIT 1);
    WHILE level IS NOT NULL LOOP
        IF EXISTS (SELECT FROM retask.tasks s
                   WHERE s.status = 'scheduled' AND s.priority = level AND s.run_after <= due
                     AND s.program_id <> ALL (paused)
                   ORDER BY s.run_after, s.task_id
                   LIMIT 1
                   FOR KEY SHARE SKIP LOCKED) THEN
            RETURN true;
        END IF;
        level := (SELECT s.priority FROM retask.tasks s
                  WHERE s.status = 'scheduled' AND s.priority < level
                  ORDER BY s.priority DESC LIMIT 1);
    END LOOP;
    RETURN false;
END
$$;
