/**
 * The worker's pause in taking tasks while the database cannot record their
 * outcomes: it gives back what it took (give_back.ts), takes no task but one
 * now and then to try again (after about 1 s, the wait doubling up to 30 s),
 * and says so once when the trouble starts and once when it ends.
 * @module
 */
import { reconnectDelay } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import type { WorkerLog } from "./outcome.ts";

/** The wait before try `n` (1, 2, ...): from about 1 s, doubling, at most 30 s, jittered. */
function tryDelay(n: number): number {
  return reconnectDelay(n, 1_000, 30_000);
}

/** Whether the worker may take tasks, and how many. */
export class TakingPause {
  readonly #log: (entry: WorkerLog) => void;
  readonly #now: () => number;
  readonly #delay: (n: number) => number;
  #paused = false;
  #tries = 0;
  #nextTry = 0;

  /** `now` and `delay` are for tests. */
  constructor(
    log: (entry: WorkerLog) => void,
    now: () => number = () => performance.now(),
    delay: (n: number) => number = tryDelay,
  ) {
    this.#log = log;
    this.#now = now;
    this.#delay = delay;
  }

  /** True while the worker takes no tasks but its tries. */
  get paused(): boolean {
    return this.#paused;
  }

  /** The database refused to record an outcome, for `error`. */
  refused(error: unknown): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#tries = 1;
    this.#nextTry = this.#now() + this.#delay(1);
    this.#log({
      level: "warn",
      message: `cannot record outcomes: ${errorMessage(error)}; not taking tasks until it can`,
    });
  }

  /** An outcome was recorded. */
  recorded(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#log({ level: "info", message: "outcomes can be recorded again; taking tasks" });
  }

  /**
   * How many of the `wanted` tasks the worker may take now: all of them, one
   * when it is time to try again, or none.
   */
  allow(wanted: number): number {
    if (!this.#paused || wanted === 0) return wanted;
    if (this.#now() < this.#nextTry) return 0;
    this.#tries++;
    this.#nextTry = this.#now() + this.#delay(this.#tries);
    return 1;
  }

  /** Milliseconds until the next try; Infinity when not paused. */
  untilNextTry(): number {
    return this.#paused ? Math.max(0, this.#nextTry - this.#now()) : Infinity;
  }
}
