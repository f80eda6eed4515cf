// While the history cannot be written, the worker takes no task and burns no
// attempt: it gives back what it took, says so once, tries a task now and
// then, and says so again when it can record once more. (Issue "Safe to
// deploy", item 14.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import {
  freshDatabase,
  killWorkers,
  spawnWorker,
  takeTasks,
  TEST_FUNCTIONS,
  waitFor,
} from "../harness/mod.ts";

const CANNOT =
  /cannot record outcomes: could not extend file .*No space left on device; not taking tasks until it can/;
const AGAIN = /outcomes can be recorded again/;

function times(pattern: RegExp, text: string): number {
  return text.match(new RegExp(pattern.source, "g"))?.length ?? 0;
}

Deno.test("a worker that cannot record outcomes waits, burning no attempt", async () => {
  const db = await freshDatabase("security_unrecordable", { install: true });
  const { sql } = db;
  try {
    // the history's tablespace is full while history_full holds a row; the
    // trigger is the test's (a superuser's), the worker needs no right to it
    await sql.unsafe(`
      CREATE TABLE history_full (since timestamptz NOT NULL DEFAULT now());
      CREATE FUNCTION refuse_history() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = pg_catalog, pg_temp AS $$
      BEGIN
        IF EXISTS (SELECT FROM public.history_full) THEN
          RAISE EXCEPTION 'could not extend file "pg_tblspc/16400/PG_15/16384/16500": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_history BEFORE INSERT ON retask.task_attempts
        FOR EACH ROW EXECUTE FUNCTION refuse_history();
      INSERT INTO history_full DEFAULT VALUES;
      -- counts the program's runs (a sequence is not rolled back with them)
      CREATE SEQUENCE runs;
      GRANT USAGE ON SEQUENCE runs TO PUBLIC;
      CREATE FUNCTION counted(params jsonb) RETURNS text LANGUAGE sql AS $$
        SELECT 'run ' || nextval('runs') $$;
    `);
    const { programId } = await registerProgram(sql, "counted", "counted");
    await enqueue(sql, { program: programId, params: Array(200).fill({}), maxAttempts: 1 });
    const runs = async () => {
      const [row] = await sql<{ n: number }[]>`
        SELECT CASE WHEN is_called THEN last_value ELSE 0 END::int AS n FROM runs`;
      return row.n;
    };

    const worker = spawnWorker(db.url, ["--poll-interval", "100"]);
    let exited = false;
    worker.done.then(() => (exited = true));
    await waitFor(() => CANNOT.test(worker.stderr()), "the worker to say it cannot record");
    // past its first takes, it has tried again at least twice, a task at a time
    const first = await runs();
    await waitFor(async () => (await runs()) >= first + 2, "two more tries", 60_000);
    // (between a try's take and its giving back, that one task is running)
    await waitFor(async () => {
      const [row] = await sql<{ scheduled_untried: number; history: number }[]>`
        SELECT count(*) FILTER (WHERE status = 'scheduled' AND attempt_count = 0)::int
                 AS scheduled_untried,
               (SELECT count(*) FROM retask.task_attempts)::int AS history
        FROM retask.tasks`;
      return row.scheduled_untried === 200 && row.history === 0;
    }, "every task scheduled, untried, with no history");
    assert.ok(await runs() < 200, "it did not run through the queue");
    assert.equal(exited, false, "the worker is still running");
    assert.equal(times(CANNOT, worker.stderr()), 1, `said once:\n${worker.stderr()}`);

    await sql`DELETE FROM history_full`;
    await waitFor(() => AGAIN.test(worker.stderr()), "the worker to recover", 90_000);
    await waitFor(
      async () => {
        const [row] = await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM retask.tasks WHERE status = 'finished'`;
        return row.n === 200;
      },
      "every task to finish",
      60_000,
    );
    worker.kill("SIGTERM");
    const { code, stderr } = await worker.done;
    assert.equal(code, 0, stderr);
    assert.equal(times(CANNOT, stderr), 1, stderr);
    assert.equal(times(AGAIN, stderr), 1, stderr);
    const [row] = await sql<{ first_attempts: number; history: number; finished: number }[]>`
      SELECT count(*) FILTER (WHERE attempt_count = 1)::int AS first_attempts,
             (SELECT count(*) FROM retask.task_attempts
              WHERE attempt = 1 AND outcome = 'finished')::int AS history,
             count(*) FILTER (WHERE status = 'finished')::int AS finished
      FROM retask.tasks`;
    assert.deepEqual(row, { first_attempts: 200, history: 200, finished: 200 });
  } finally {
    await killWorkers();
    await db.drop();
  }
});

Deno.test("release_tasks gives a take back as it was before, uncounted", async () => {
  const db = await freshDatabase("security_release", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    const [first, second] = await enqueue(sql, { program: programId, params: [{}, {}] });
    await takeTasks(sql, 2, "w1", "1 minute");
    // the second task's first attempt failed; w2 took its second
    await sql`
      SELECT retask.record_attempts(ARRAY[${second}]::bigint[], ARRAY[1], ARRAY['error'],
                                    errors => ARRAY['boom'])`;
    const before = await task(second);
    await takeTasks(sql, 1, "w2", "1 minute");
    const release = async (ids: number[], attempts: number[]) => {
      const [row] = await sql<{ n: number }[]>`
        SELECT retask.release_tasks(${ids}::bigint[], ${attempts}::integer[]) AS n`;
      return row.n;
    };
    assert.equal(await release([first, second], [1, 1]), 1, "the second no longer runs attempt 1");
    assert.equal(await release([second], [2]), 1);
    assert.equal(await release([second], [2]), 0, "given back once");
    assert.deepEqual(await task(first), {
      status: "scheduled",
      attempt_count: 0,
      started: null,
      finished: null,
      pid: null,
      worker: null,
      lease_expires_at: null,
    });
    assert.deepEqual(await task(second), before, "as after its first attempt");
    const [history] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM retask.task_attempts`;
    assert.equal(history.n, 1, "nothing recorded for what was given back");
  } finally {
    await db.drop();
  }

  async function task(id: number) {
    const [row] = await sql`
      SELECT status, attempt_count, started, finished, pid, worker, lease_expires_at
      FROM retask.tasks WHERE task_id = ${id}`;
    return { ...row };
  }
});
