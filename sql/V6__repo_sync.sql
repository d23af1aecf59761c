-- Repository providers (GitHub, Gitea, GitLab) on the sync engine: their
-- task changes are queued too, listing validators (ETags) are kept per
-- connection, and provider releases are upserted by their id.

ALTER TABLE sync_cursor ADD COLUMN etags jsonb NOT NULL DEFAULT '{}';

CREATE UNIQUE INDEX release_external ON release (project_id, provider, external_id) WHERE external_id IS NOT NULL;

-- Tasks are queued for every syncing provider; cycles and modules only for
-- Plane (repositories have no counterpart).
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
            updated_at = now();
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('mc_sync', '');
    END IF;
    RETURN NULL;
END $$;
