-- retask 0002: a task never holds more attempts than it may have. A row
-- written past retask's functions with an attempt count at or beyond its
-- maximum (one near the integer's limit made every worker's take overflow)
-- cannot be taken: those already scheduled end 'error' here, saying why, and
-- the table refuses new ones.

UPDATE retask.tasks
SET status = 'error',
    finished = now(),
    result = format('attempt %s of %s', attempt_count, max_attempts) || E'\n'
             || 'no attempt left: the row was scheduled with its attempts used up'
WHERE status = 'scheduled' AND attempt_count >= max_attempts;

ALTER TABLE retask.tasks
    ADD CONSTRAINT tasks_attempt_count_check
        CHECK (attempt_count BETWEEN 0 AND max_attempts) NOT VALID;
