import assert from "node:assert/strict";
import { faultOf } from "./give_back.ts";

Deno.test("a failure outside any program is the database's, passing, or the task's", () => {
  for (const code of ["53100", "53200", "42501", "42883", "42P01", "42804", "58030", "XX000"]) {
    assert.equal(faultOf(code), "database", code);
  }
  for (const code of ["55P03", "55006", "57P04", "25006", "3F000", "3D000"]) {
    assert.equal(faultOf(code), "database", code);
  }
  for (const code of ["40001", "40P01"]) assert.equal(faultOf(code), "transient", code);
  for (const code of ["57014", "22003", "23505", "P0001", "54001", null, undefined]) {
    assert.equal(faultOf(code), "task", String(code));
  }
});
