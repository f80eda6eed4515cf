-- retask 0004: tasks counted per program and status as they change, so
-- `status` reads a few rows instead of every task; and autovacuum settings
-- that keep take and rescue fast between vacuums.

-- Each session (backend) keeps its own rows: the triggers on retask.tasks
-- (sql/counts.sql) add what a statement changed to the rows of the session
-- that ran it, so no two sessions write the same row and an enqueuer never
-- waits for a worker. A program's count is the sum of its rows; those of
-- sessions that ended are folded into a live session's now and then
-- (retask.fold_task_counts). Rows are updated in place (HOT: n is in no
-- index), so the table stays a few pages even where autovacuum never runs.
-- pid 0 is no session: the counts this migration starts from.
CREATE TABLE retask.task_counts (
    program_id  bigint NOT NULL,
    status      text NOT NULL,
    pid         integer NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (program_id, status, pid)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200);

-- No write of tasks may pass uncounted between this count and the creation of
-- the triggers, later in the same transaction (reads go on meanwhile).
LOCK TABLE retask.tasks IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO retask.task_counts (program_id, status, pid, n)
SELECT t.program_id, t.status, 0, count(*) FROM retask.tasks t GROUP BY t.program_id, t.status;

-- Take and rescue read the partial indexes of scheduled and running tasks,
-- where every finished attempt leaves a dead entry until a vacuum: vacuum
-- after 1% of the rows changed (the default, 20%, is 200,000 dead rows at a
-- million tasks), and after 5% were inserted, so index-only scans stay
-- index-only; with five times the default cost limit a vacuum of a million
-- tasks takes seconds, not minutes. Only where autovacuum is on.
ALTER TABLE retask.tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 1000);
ALTER TABLE retask.task_attempts SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 1000);
