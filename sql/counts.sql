-- retask: tasks counted per program and status as they change
-- (retask.task_counts, migration 0004), so `status` never counts the table.
--
-- After each statement that writes retask.tasks, a trigger adds what changed,
-- one row per program and status (+1 for each task that came into it, -1 for
-- each that left), to the rows of the session that ran the statement: the
-- worker's update of 50 tasks adds one small upsert, not 50. No two sessions
-- write the same row, so enqueuers and workers never wait for each other
-- here, and a session's row was last written by its own committed
-- transaction, so a REPEATABLE READ caller never meets a concurrent update of
-- it. A program's count is the sum of its rows: exact, as of the reader's
-- snapshot. Rows are updated in place rather than a row appended per
-- statement: the updates are HOT (n is in no index) and pruned within their
-- page, so the table stays a few pages even where autovacuum never runs,
-- where appended rows (18 MB after 320,000 statements) made every read slower.
--
-- The triggers run as their owner (SECURITY DEFINER, and they run no
-- program): no group may write the counts, so a program running as the worker
-- cannot forge them (it can only change tasks, which the counts then follow).

-- Adds one statement's changes to this session's rows; TRUNCATE empties them.
-- One function for the four triggers: each branch reads only the transition
-- tables its own trigger names.
CREATE FUNCTION retask.count_task_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO retask.task_counts AS c (program_id, status, pid, n)
        SELECT a.program_id, a.status, pg_backend_pid(), count(*)
        FROM added a GROUP BY a.program_id, a.status
        ON CONFLICT (program_id, status, pid) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        -- most updates move tasks between statuses; a lease renewal moves none
        INSERT INTO retask.task_counts AS c (program_id, status, pid, n)
        SELECT d.program_id, d.status, pg_backend_pid(), sum(d.n)
        FROM (SELECT a.program_id, a.status, 1 AS n FROM added a
              UNION ALL
              SELECT r.program_id, r.status, -1 FROM removed r) d
        GROUP BY d.program_id, d.status
        HAVING sum(d.n) <> 0
        ON CONFLICT (program_id, status, pid) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO retask.task_counts AS c (program_id, status, pid, n)
        SELECT r.program_id, r.status, pg_backend_pid(), -count(*)
        FROM removed r GROUP BY r.program_id, r.status
        ON CONFLICT (program_id, status, pid) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        -- TRUNCATE: it waited for every transaction that had written tasks
        DELETE FROM retask.task_counts;
        RETURN NULL;
    END IF;
    -- now and then, rows of sessions that ended are taken in (sessions come
    -- and go; a worker's stay): about 0.1 ms, once in 100 statements
    IF random() < 0.01 THEN
        PERFORM retask.fold_task_counts();
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON retask.tasks
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION retask.count_task_changes();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON retask.tasks
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION retask.count_task_changes();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON retask.tasks
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION retask.count_task_changes();
CREATE TRIGGER tasks_count_truncate AFTER TRUNCATE ON retask.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION retask.count_task_changes();

-- Takes the rows of sessions that ended (and the migration's, pid 0) into
-- this session's, so the table holds about one row per live session, program
-- and status; returns how many rows it took. Rows another transaction holds
-- are skipped, never waited for: concurrent folds take disjoint rows. Only in
-- a READ COMMITTED transaction that may write (else it returns 0): a
-- REPEATABLE READ one could meet a row another fold just took. Any session
-- may call it (the triggers do, now and then); counts are the same after.
CREATE FUNCTION retask.fold_task_counts() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    taken integer;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR current_setting('transaction_read_only') = 'on' THEN
        RETURN 0;
    END IF;
    -- the sessions alive now, not when this transaction first looked
    PERFORM pg_stat_clear_snapshot();
    WITH live AS (
        SELECT pg_stat_get_backend_pid(s.id) AS pid FROM pg_stat_get_backend_idset() s(id)
    ), ended AS (
        SELECT c.program_id, c.status, c.pid FROM retask.task_counts c
        WHERE c.pid <> pg_backend_pid() AND NOT EXISTS (SELECT FROM live l WHERE l.pid = c.pid)
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM retask.task_counts c USING ended e
        WHERE c.program_id = e.program_id AND c.status = e.status AND c.pid = e.pid
        RETURNING c.program_id, c.status, c.n
    ), kept AS (
        INSERT INTO retask.task_counts AS c (program_id, status, pid, n)
        SELECT g.program_id, g.status, pg_backend_pid(), sum(g.n)
        FROM gone g GROUP BY g.program_id, g.status
        HAVING sum(g.n) <> 0
        ON CONFLICT (program_id, status, pid) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT count(*)::integer INTO taken FROM gone;
    RETURN taken;
END
$$;
