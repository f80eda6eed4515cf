/**
 * Functions the tests register as programs.
 * @module
 */

/** Programs that always succeed, always fail, or write a row and then fail on request. */
export const TEST_FUNCTIONS = `
  CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$;
  CREATE FUNCTION always_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION 'failed on purpose'; END $$;
  CREATE TABLE side_effects (task_note text);
  CREATE FUNCTION note_and_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO side_effects VALUES (params ->> 'note');
    IF (params ->> 'fail')::boolean THEN RAISE EXCEPTION 'failed after writing'; END IF;
    RETURN 'wrote ' || (params ->> 'note');
  END $$;
`;
