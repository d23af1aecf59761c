-- Sync that outlives its failures.
--
-- A failing key remembers when it first failed: a transient failure (the
-- provider down, the network away) is retried with capped backoff until a
-- horizon measured from then (a day by default), not for a fixed number of
-- attempts. Whatever resets a key's attempts (a new local change, a retry
-- an operator asked for, a success) starts its clock again; the trigger
-- keeps that true for every statement that touches `attempts`.
ALTER TABLE sync_job ADD COLUMN first_failed_at timestamptz;
UPDATE sync_job SET first_failed_at = updated_at WHERE attempts > 0;

CREATE FUNCTION sync_job_failure_clock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.attempts = 0 THEN
        NEW.first_failed_at := NULL;
    ELSIF NEW.first_failed_at IS NULL THEN
        NEW.first_failed_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER sync_job_failure_clock BEFORE INSERT OR UPDATE OF attempts ON sync_job
    FOR EACH ROW EXECUTE FUNCTION sync_job_failure_clock();

-- The sync workers that are running (`mctl sync run`, a console's
-- `:sync start`), each saying what it is doing: working, idle, or waiting
-- for something it cannot do without (the database). A worker writes its
-- row every turn, so one whose row has not been written for a while is gone.
CREATE TABLE sync_worker (
    id         text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    -- The one project it serves; none when it serves all of them.
    project_id bigint      REFERENCES project (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    state      text        NOT NULL CHECK (state IN ('working', 'idle', 'waiting', 'stopped')),
    -- What it waits for, or the last trouble it recovered from.
    detail     text
);
