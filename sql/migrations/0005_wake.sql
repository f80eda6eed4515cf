-- retask 0005: whether a worker sleeps, waiting for a notification. An enqueue
-- (or a retry that is runnable at once) notifies channel retask_tasks only
-- while this is true, and clears it: PostgreSQL lets one notifying
-- transaction commit at a time, so a notification per enqueue would make
-- every enqueuer wait for the others' commits. The functions that read and
-- write it are in sql/wake.sql.
CREATE TABLE retask.wake (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    asleep boolean NOT NULL DEFAULT false
);
INSERT INTO retask.wake DEFAULT VALUES;
