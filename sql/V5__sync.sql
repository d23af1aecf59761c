-- The sync worker: a work queue filled by local changes (the outbox), each
-- connection's pull state, and conflicts the three-way merge could not settle.

-- A mapping whose remote copy was deleted stays, marked, so the object is not
-- pushed again as new.
ALTER TABLE external_mapping DROP CONSTRAINT external_mapping_sync_state_check;
ALTER TABLE external_mapping ADD CONSTRAINT external_mapping_sync_state_check
    CHECK (sync_state IN ('in_sync', 'pending', 'conflict', 'error', 'deleted'));

-- One row per reconcile key and connection: `task:42`, `cycle:7`,
-- `pull` (incremental pull), `full` (full reconcile). Ten edits of a task
-- coalesce into one row whose generation went up ten times; the worker
-- removes a row only if its generation is still the one it worked on.
CREATE TABLE sync_job (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id bigint      NOT NULL REFERENCES integration_connection (id) ON DELETE CASCADE,
    key           text        NOT NULL CHECK (length(key) BETWEEN 1 AND 300),
    generation    integer     NOT NULL DEFAULT 1,
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    -- The lease: a worker that dies leaves it to expire, and the job comes back.
    locked_by     text,
    locked_until  timestamptz,
    -- A dead letter: out of attempts, or failed in a way retrying won't heal.
    dead          boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_id, key)
);
CREATE INDEX sync_job_ready ON sync_job (available_at) WHERE NOT dead;

-- Per connection: how far pulls got, when passes ran, pauses for rate limits,
-- what the remote side can do, and names of remote things (states, labels,
-- members) by id.
CREATE TABLE sync_cursor (
    connection_id bigint      PRIMARY KEY REFERENCES integration_connection (id) ON DELETE CASCADE,
    watermarks    jsonb       NOT NULL DEFAULT '{}',
    last_pass_at  timestamptz,
    last_pass_ok  boolean,
    last_full_at  timestamptz,
    last_error    text,
    paused_until  timestamptz,
    capabilities  jsonb       NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The same field changed differently on both sides since they last agreed.
-- Settled at once by the connection's policy (recorded, for the operators to
-- see), or left open for an operator to resolve.
CREATE TABLE sync_conflict (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint      NOT NULL REFERENCES project (id),
    connection_id bigint      NOT NULL REFERENCES integration_connection (id) ON DELETE CASCADE,
    mapping_id    bigint      NOT NULL REFERENCES external_mapping (id) ON DELETE CASCADE,
    local_kind    text        NOT NULL,
    local_id      bigint      NOT NULL,
    entity_key    text,
    field         text        NOT NULL,
    base_value    jsonb,
    local_value   jsonb,
    remote_value  jsonb,
    detected_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolution    text        CHECK (resolution IN ('local', 'remote')),
    resolved_by   text
);
CREATE UNIQUE INDEX sync_conflict_open ON sync_conflict (mapping_id, field) WHERE resolved_at IS NULL;
CREATE INDEX sync_conflict_project ON sync_conflict (project_id, detected_at DESC);

-- The outbox: a change to a task, cycle or module of a project with an
-- enabled connection queues its reconcile key in the same transaction. The
-- sync worker's own writes name their connection in `mctl.sync_connection`,
-- so what it pulled in is not queued to be pushed straight back.
CREATE FUNCTION sync_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    own text := coalesce(current_setting('mctl.sync_connection', true), '');
    queued integer;
BEGIN
    INSERT INTO sync_job (connection_id, key)
    SELECT DISTINCT c.id, TG_ARGV[0] || ':' || n.id
    FROM new_rows n
    JOIN integration_connection c ON c.project_id = n.project_id AND c.enabled AND c.provider = 'plane'
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

CREATE TRIGGER task_sync_insert AFTER INSERT ON task
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('task');
CREATE TRIGGER task_sync_update AFTER UPDATE ON task
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('task');
CREATE TRIGGER cycle_sync_insert AFTER INSERT ON cycle
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('cycle');
CREATE TRIGGER cycle_sync_update AFTER UPDATE ON cycle
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('cycle');
CREATE TRIGGER module_sync_insert AFTER INSERT ON module
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('module');
CREATE TRIGGER module_sync_update AFTER UPDATE ON module
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue('module');

-- Module membership lives beside the task: a change to it is a change to the task.
CREATE FUNCTION sync_enqueue_membership() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    own text := coalesce(current_setting('mctl.sync_connection', true), '');
    queued integer;
BEGIN
    INSERT INTO sync_job (connection_id, key)
    SELECT DISTINCT c.id, 'task:' || t.id
    FROM changed_rows m
    JOIN task t ON t.id = m.task_id
    JOIN integration_connection c ON c.project_id = t.project_id AND c.enabled AND c.provider = 'plane'
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

CREATE TRIGGER task_module_sync_insert AFTER INSERT ON task_module
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue_membership();
CREATE TRIGGER task_module_sync_delete AFTER DELETE ON task_module
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_enqueue_membership();
