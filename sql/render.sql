-- retask: a program's result as the course's text table, and its error context
-- without retask's own frames. Used by run_program (run.sql).

-- The course's text table: names centred over their column (as Python's
-- str.center: the odd space goes left when the width is odd), a line of dashes,
-- then each value left-justified; NULL prints as an empty cell. Widths count
-- characters, not bytes. Lines are collected and joined once, so the time
-- grows with the size of the result, not with its square. A table longer than
-- `max_bytes` (NULL: no limit) is cut there, and says so on a last line; no
-- cell is measured past that length either, so one huge value cannot pad every
-- line to its width.
CREATE FUNCTION retask.render_table(names text[], cells text[], max_bytes integer DEFAULT NULL)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ncols integer := cardinality(names);
    nrows integer := coalesce(array_length(cells, 1), 0);
    widths integer[] := array_fill(0, ARRAY[ncols]);
    lines text[] := '{}';
    line text[];
    size bigint := 0;
    cap integer := coalesce(max_bytes, 2147483647);
    margin integer;
    lpad_n integer;
    v text;
    out text;
BEGIN
    FOR c IN 1 .. ncols LOOP
        widths[c] := length(names[c]);
        FOR r IN 1 .. nrows LOOP
            widths[c] := greatest(widths[c], length(left(coalesce(cells[r][c], ''), cap)));
        END LOOP;
    END LOOP;

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        margin := widths[c] - length(names[c]);
        lpad_n := margin / 2 + (margin & widths[c] & 1);
        line := line || (repeat(' ', lpad_n) || names[c] || repeat(' ', margin - lpad_n));
    END LOOP;
    lines := lines || array_to_string(line, ' ');

    line := '{}';
    FOR c IN 1 .. ncols LOOP
        line := line || repeat('-', widths[c]);
    END LOOP;
    lines := lines || array_to_string(line, ' ');
    size := octet_length(lines[1]) + octet_length(lines[2]) + 2;

    FOR r IN 1 .. nrows LOOP
        EXIT WHEN size > cap;
        line := '{}';
        FOR c IN 1 .. ncols LOOP
            v := left(coalesce(cells[r][c], ''), cap);
            line := line || (v || repeat(' ', widths[c] - length(v)));
        END LOOP;
        lines := lines || array_to_string(line, ' ');
        size := size + octet_length(lines[cardinality(lines)]) + 1;
    END LOOP;
    out := array_to_string(lines, E'\n') || E'\n';
    IF octet_length(out) > cap THEN
        -- cut by characters until it fits in bytes: a character is 1 to 4 of them
        out := left(out, cap);
        WHILE octet_length(out) > cap LOOP
            out := left(out, length(out) - greatest(1, (octet_length(out) - cap) / 4));
        END LOOP;
        out := out || format(E'\n… cut: the result is larger than %s bytes\n', cap);
    END IF;
    RETURN out;
END
$$;

-- The line `retask status` shows of a task's result, from its first 65,536
-- characters: the caller passes left(result, 65537), so a list of tasks with
-- huge results reads no more of them than of small ones. The `attempt n of m`
-- line is skipped; of a table (header, dashes, rows) its first row, or
-- '(no rows)'; else the first line that is not blank. A line longer than
-- `most` characters, or cut by the window, ends in '…'.
CREATE FUNCTION retask.result_summary(head text, most integer DEFAULT 300) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cut boolean := length(head) > 65536;
    l text[] := string_to_array(left(head, 65536), E'\n');
    is_table boolean;
    i integer;
    line text;
BEGIN
    IF head IS NULL THEN
        RETURN NULL;
    END IF;
    IF l[1] ~ '^attempt [0-9]+ of [0-9]+$' THEN
        l := l[2:];
    END IF;
    is_table := coalesce(l[2] ~ '^[- ]+$' AND strpos(l[2], '-') > 0, false);
    IF is_table THEN
        i := CASE WHEN l[3] ~ '\S' THEN 3 END;
    ELSE
        SELECT min(u.n)::integer INTO i FROM unnest(l) WITH ORDINALITY AS u(x, n) WHERE u.x ~ '\S';
    END IF;
    IF i IS NULL THEN
        RETURN CASE WHEN is_table AND NOT (cut AND cardinality(l) <= 3) THEN '(no rows)'
                    WHEN cut THEN '(its first line is too long to show here)'
                    ELSE '' END;
    END IF;
    line := CASE WHEN is_table THEN regexp_replace(l[i], '\s+$', '')
                 ELSE regexp_replace(l[i], '^\s+|\s+$', '', 'g') END;
    IF length(line) > most OR (cut AND i = cardinality(l)) THEN
        RETURN left(line, most - 1) || '…';
    END IF;
    RETURN line;
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
