/**
 * The harness the tests and the benchmarks share: a fresh database per test
 * file or measurement, waiting with a deadline, `retask work` and the CLI as
 * child processes, and the course application's seed schema.
 * @module
 */
export * from "./database.ts";
export * from "./wait.ts";
export * from "./worker.ts";
export * from "./cli.ts";
export * from "./programs.ts";
export * from "./course.ts";
