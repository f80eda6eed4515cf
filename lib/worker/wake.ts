/**
 * Waiting that can be cut short: an abortable sleep, and the worker's wake-up
 * call, which a notification, a lane that became free or a stop request rings.
 * @module
 */

/** Resolves after `ms`, or at once when `signal` is (or becomes) aborted. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A wake-up call for one sleeper. A ring that comes while nobody sleeps is
 * kept, so the next sleep returns at once: nothing rung between two checks of
 * the queue is missed.
 */
export class Wake {
  #rung = false;
  #resolve: (() => void) | null = null;

  /** Wakes the sleeper, or the next one to sleep. */
  ring(): void {
    this.#rung = true;
    this.#resolve?.();
  }

  /** Sleeps up to `ms`; returns early on a ring or when `signal` aborts. */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (!this.#rung) {
      const controller = new AbortController();
      this.#resolve = () => controller.abort();
      const onAbort = () => controller.abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        await sleep(ms, signal?.aborted ? AbortSignal.abort() : controller.signal);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        this.#resolve = null;
      }
    }
    this.#rung = false;
  }
}
