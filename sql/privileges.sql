-- retask: who may do what (SECURITY.md). Five group roles, NOLOGIN; an
-- administrator grants them to login roles:
--
--   retask_read      sees programs, tasks and their history (`retask status`)
--   retask_enqueue   queues tasks of registered programs (`retask enqueue`)
--   retask_register  registers programs: only functions it may EXECUTE itself
--   retask_worker    takes, runs and records tasks (`retask work`)
--   retask_admin     operates the queue: retry, cancel, delete, prune, pause
--
-- All are members of retask_read; retask_admin also of retask_enqueue and
-- retask_register. Nothing of retask is granted to
-- PUBLIC. A program runs with the worker's rights (or its function owner's,
-- if the function is SECURITY DEFINER); nothing that runs one is SECURITY
-- DEFINER. Applied after the functions on every refresh (dropping a routine
-- drops its grants); roles are cluster-wide and created once.

DO $$
DECLARE
    group_ text;
BEGIN
    FOREACH group_ IN ARRAY ARRAY['retask_read', 'retask_enqueue', 'retask_register', 'retask_worker',
                                  'retask_admin'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = group_);
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', group_);
        EXCEPTION
            -- another database's install created it meanwhile
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the group role % does not exist, and this role may not create it', group_
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Install as a role with CREATEROLE, or have one run: CREATE ROLE '
                                 || group_ || ' NOLOGIN (and likewise for the other groups in SECURITY.md).';
        END;
    END LOOP;
END $$;

GRANT retask_read TO retask_enqueue, retask_register, retask_worker, retask_admin;
GRANT retask_enqueue, retask_register TO retask_admin;

REVOKE ALL ON ALL TABLES IN SCHEMA retask FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA retask FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA retask FROM PUBLIC;
GRANT USAGE ON SCHEMA retask TO retask_read;

-- reading: the tables, and the one line `status` shows of a result
GRANT SELECT ON retask.programs, retask.tasks, retask.task_attempts, retask.migrations TO retask_read;
GRANT EXECUTE ON FUNCTION retask.result_summary(text, integer), retask.tasks_pending(),
    retask.check_retry_policy(integer, text, interval, interval),
    retask.host_port_problem(text, text), retask.check_host_port(text, text)
    TO retask_read;
-- the counts per program and status (sql/counts.sql); no group writes them:
-- the triggers on tasks that do run as their owner
GRANT SELECT ON retask.task_counts TO retask_read;

-- enqueueing: through enqueue_keyed (enqueue_task(s) wrap it), which checks
-- every task and runs as its owner (SECURITY DEFINER: no program runs
-- in it); no write on tasks
GRANT EXECUTE ON FUNCTION
    retask.enqueue_keyed(bigint, jsonb[], text, text, integer, interval, text, timestamptz, integer, text),
    retask.enqueue_tasks(bigint, jsonb[], text, text, integer, interval, text, timestamptz, integer, text),
    retask.enqueue_task(bigint, jsonb, text, text, integer, interval, text, timestamptz, integer, text),
    retask.check_priority(integer)
    TO retask_enqueue, retask_worker;
-- waking sleeping workers (sql/wake.sql), which enqueue, retry and record
-- do: it runs as its owner, writing only the flag; worker_idle, which sets
-- it, is the workers' alone (ALL ROUTINES below)
GRANT EXECUTE ON FUNCTION retask.wake_workers() TO retask_enqueue, retask_worker;

-- registering: upsert_program runs with the registering role's rights, and the
-- programs table's trigger refuses a function that role may not EXECUTE, or a
-- temporary one, however the row is written. Pausing is not registering.
GRANT INSERT, UPDATE (name, func, max_attempts, retry_delay, retry_backoff, retry_delay_max,
                      timeout, priority)
    ON retask.programs TO retask_register;
GRANT EXECUTE ON FUNCTION
    retask.upsert_program(text, text, integer, interval, text, interval, text, interval, integer),
    retask.program_function(text, text), retask.lookup_function(text), retask.check_priority(integer)
    TO retask_register;

-- pausing: pause_program and resume_program run as their owner (SECURITY
-- DEFINER: they write only programs.paused, and run no program)
GRANT EXECUTE ON FUNCTION retask.pause_program(bigint), retask.resume_program(bigint)
    TO retask_admin;

-- schedules: whoever may enqueue may schedule (a schedule only enqueues, as
-- its owner could by hand); upsert_schedule and remove_schedule run with
-- their caller's rights. Workers fire them (fire_schedule), writing only the
-- next slot and what it enqueued.
GRANT SELECT ON retask.schedules TO retask_read;
GRANT INSERT, UPDATE, DELETE ON retask.schedules TO retask_enqueue;
GRANT EXECUTE ON FUNCTION
    retask.check_schedule(text, text, text),
    retask.upsert_schedule(text, bigint, text, text, jsonb, timestamptz),
    retask.remove_schedule(text)
    TO retask_enqueue;
GRANT UPDATE (next_run_at, last_run_at, last_task_id) ON retask.schedules TO retask_worker;

-- operating: retry, cancel, delete and prune run as their owner (SECURITY
-- DEFINER: no program runs in them, and each checks what it is given), so an
-- administrator needs no write on any table. Workers prune too (work
-- --retention), through ALL ROUTINES below.
GRANT SELECT ON retask.cancel_requests TO retask_read;
GRANT EXECUTE ON FUNCTION
    retask.retry_tasks(bigint[], bigint, text, integer),
    retask.cancel_tasks(bigint[], bigint, text),
    retask.delete_tasks(bigint[]),
    retask.prune_tasks(interval, text[], integer)
    TO retask_admin;

-- working: every function (they run with the worker's rights), the writes the
-- state machine makes, and nothing else. A task's cancel request goes when its
-- attempt is recorded.
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA retask TO retask_worker;
-- but not the operator's: a program runs with its worker's rights, and must
-- not delete, retry or cancel other tasks, pause programs or edit schedules
-- (prune_tasks stays, for work --retention)
REVOKE EXECUTE ON FUNCTION
    retask.retry_tasks(bigint[], bigint, text, integer),
    retask.cancel_tasks(bigint[], bigint, text),
    retask.delete_tasks(bigint[]),
    retask.pause_program(bigint), retask.resume_program(bigint),
    retask.upsert_schedule(text, bigint, text, text, jsonb, timestamptz),
    retask.remove_schedule(text)
    FROM retask_worker;
GRANT UPDATE ON retask.tasks TO retask_worker;
GRANT INSERT ON retask.task_attempts TO retask_worker;
GRANT DELETE ON retask.cancel_requests TO retask_worker;
