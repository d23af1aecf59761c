-- A change to an object whose reconcile key is already due and unclaimed
-- leaves that key's row alone: the worker that claims it will read the
-- object as it is then, so bumping the generation buys nothing. Bulk writes
-- (a console bulk move, a restore of 100,000 tasks) used to rewrite one queue
-- row per task; now they rewrite only keys that are claimed (so the worker
-- runs them again), waiting out a backoff (so they run now) or dead (so they
-- come back). The webhook inbox coalesces its keys the same way.
CREATE OR REPLACE FUNCTION sync_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    own text := coalesce(current_setting('mctl.sync_connection', true), '');
    queued integer;
BEGIN
    INSERT INTO sync_job (connection_id, key)
    SELECT DISTINCT c.id, TG_ARGV[0] || ':' || n.id
    FROM new_rows n
    JOIN integration_connection c ON c.project_id = n.project_id AND c.enabled
        AND (c.provider = 'plane' OR (TG_ARGV[0] = 'task' AND c.provider IN ('github', 'gitea', 'gitlab')))
    WHERE c.id::text <> own
    ON CONFLICT (connection_id, key) DO UPDATE
        SET generation = sync_job.generation + 1,
            available_at = least(sync_job.available_at, now()),
            dead = false,
            attempts = CASE WHEN sync_job.dead THEN 0 ELSE sync_job.attempts END,
            updated_at = now()
        WHERE sync_job.dead OR sync_job.available_at > now() OR sync_job.locked_by IS NOT NULL;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('mc_sync', '');
    END IF;
    RETURN NULL;
END $$;
