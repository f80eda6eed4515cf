-- retask: a program's result as the course's text table, and its error context
-- without retask's own frames. Used by run_program (run.sql).

-- The course's text table: names centred over their column (as Python's
-- str.center: the odd space goes left when the width is odd), a line of dashes,
-- then each value left-justified; NULL prints as an empty cell. Widths count
-- characters, not bytes.
CREATE FUNCTION retask.render_table(names text[], cells text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ncols integer := cardinality(names);
    nrows integer := coalesce(array_length(cells, 1), 0);
    widths integer[] := array_fill(0, ARRAY[ncols]);
    line text[];
    out text := '';
    margin integer;
    lpad_n integer;
    v text;
BEGIN
    FOR c IN 1 .. ncols LOOP
        widths[c] := length(names[c]);
        FOR r IN 1 .. nrows LOOP
            widths[c] := greatest(widths[c], length(coalesce(cells[r][c], '')));
        END LOOP;
    END LOOP;

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        margin := widths[c] - length(names[c]);
        lpad_n := margin / 2 + (margin & widths[c] & 1);
        line := line || (repeat(' ', lpad_n) || names[c] || repeat(' ', margin - lpad_n));
    END LOOP;
    out := array_to_string(line, ' ') || E'\n';

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        line := line || repeat('-', widths[c]);
    END LOOP;
    out := out || array_to_string(line, ' ') || E'\n';

    FOR r IN 1 .. nrows LOOP
        line := '{}';
        FOR c IN 1 .. ncols LOOP
            v := coalesce(cells[r][c], '');
            line := line || (v || repeat(' ', widths[c] - length(v)));
        END LOOP;
        out := out || array_to_string(line, ' ') || E'\n';
    END LOOP;
    RETURN out;
END
$$;

-- The names of the columns `SELECT * FROM fn(...)` returns: its OUT/TABLE
-- parameters, else the attributes of its composite result, else (a scalar
-- result) the function's own name.
CREATE FUNCTION retask.program_columns(fn regprocedure) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (
        SELECT coalesce(
            (SELECT array_agg(coalesce(nullif(a.name, ''), 'column' || a.pos) ORDER BY a.pos)
             FROM (SELECT u.name, row_number() OVER (ORDER BY u.ord) AS pos
                   FROM unnest(p.proargmodes, p.proargnames) WITH ORDINALITY AS u(mode, name, ord)
                   WHERE u.mode IN ('o', 'b', 't')) a),
            (SELECT array_agg(att.attname::text ORDER BY att.attnum)
             FROM pg_type ty JOIN pg_attribute att ON att.attrelid = ty.typrelid
             WHERE ty.oid = p.prorettype AND ty.typrelid <> 0 AND att.attnum > 0
               AND NOT att.attisdropped),
            ARRAY[p.proname::text])
        FROM pg_proc p WHERE p.oid = fn);
END
$$;

-- A failed program's PG_EXCEPTION_CONTEXT without retask's own frames: the
-- dynamic query run_program builds and everything that called it say nothing
-- about the program.
CREATE FUNCTION retask.program_error_context(context text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT nullif(regexp_replace(context, '\n?SQL statement "SELECT pg_catalog\.array_agg\(ARRAY\[.*$', ''), '')
$$;
