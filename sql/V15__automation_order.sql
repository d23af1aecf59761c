-- n8n automation: every event carries a per-project sequence number and the
-- object it is about, so events of one object go out in the order they
-- happened; times in events are RFC 3339 in UTC with `Z`; commands from
-- workflows are audited under a source of their own.

ALTER TABLE audit_entry DROP CONSTRAINT audit_entry_source_check;
ALTER TABLE audit_entry ADD CONSTRAINT audit_entry_source_check
    CHECK (source IN ('console', 'cli', 'sync', 'recovery', 'agent', 'automation')) NOT VALID;
ALTER TABLE audit_entry VALIDATE CONSTRAINT audit_entry_source_check;

-- The last sequence number given out per project.
CREATE TABLE automation_sequence (
    project_id bigint PRIMARY KEY REFERENCES project (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL CHECK (last_seq > 0)
);

-- The next number of a project's events: gap-free per project, in commit
-- order of the row lock (the transaction that takes it first commits its
-- events first, or rolls back and its numbers are reused).
CREATE FUNCTION automation_next_seq(p_project_id bigint) RETURNS bigint LANGUAGE sql VOLATILE AS $$
    INSERT INTO automation_sequence (project_id, last_seq) VALUES (p_project_id, 1)
    ON CONFLICT (project_id) DO UPDATE SET last_seq = automation_sequence.last_seq + 1
    RETURNING last_seq
$$;

-- One time format in everything sent to a workflow.
CREATE FUNCTION automation_time(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

ALTER TABLE automation_delivery ADD COLUMN seq bigint, ADD COLUMN entity text;
-- Events captured before this version: numbered in the order they were
-- captured, each about its audit entry's object (or its derived subject).
UPDATE automation_delivery d SET seq = x.n
FROM (SELECT id, row_number() OVER (PARTITION BY project_id ORDER BY created_at, id) AS n
      FROM automation_delivery) x
WHERE x.id = d.id;
UPDATE automation_delivery d
SET entity = coalesce(d.subject, (SELECT a.entity_kind || ':' || a.entity_id FROM audit_entry a WHERE a.id = d.audit_id));
INSERT INTO automation_sequence (project_id, last_seq)
SELECT project_id, max(seq) FROM automation_delivery GROUP BY project_id;
ALTER TABLE automation_delivery ALTER COLUMN seq SET NOT NULL;
-- The earlier undelivered events of an object, looked up before each delivery.
CREATE INDEX automation_delivery_pending ON automation_delivery (connection_id, entity, seq)
    WHERE delivered_at IS NULL;

CREATE OR REPLACE FUNCTION automation_payload(event text, e_id bigint, e_project_id bigint, e_at timestamptz,
                                              e_actor text, e_source text, e_entity_id bigint, e_entity_key text,
                                              e_before jsonb, e_after jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'project', (SELECT key FROM project WHERE id = e_project_id),
        'actor', jsonb_build_object('name', e_actor, 'source', e_source),
        'audit_id', e_id,
        'at', automation_time(e_at),
        'data', CASE
            WHEN event LIKE 'task.%' THEN jsonb_build_object(
                'id', e_entity_id, 'key', e_entity_key, 'title', e_after -> 'title',
                'lane', e_after -> 'lane', 'lane_category', e_after -> 'lane_category',
                'from_lane', e_before -> 'lane', 'assignee', e_after -> 'assignee',
                'from_assignee', CASE WHEN event = 'task.assigned' THEN e_before -> 'assignee' END,
                'priority', e_after -> 'priority', 'version', e_after -> 'version')
            WHEN event = 'handoff.opened' THEN jsonb_build_object(
                'id', e_entity_id, 'task', e_after -> 'task_key', 'kind', e_after -> 'kind',
                'from', e_after -> 'from_agent', 'to', e_after -> 'to_agent', 'reason', e_after -> 'reason',
                'due_at', automation_time((e_after ->> 'due_at')::timestamptz))
            WHEN event = 'pipeline.failed' THEN jsonb_build_object(
                'id', e_entity_id, 'provider', e_after -> 'provider', 'external_id', e_after -> 'external_id',
                'name', e_after -> 'name', 'ref', e_after -> 'git_ref', 'commit', e_after -> 'commit_sha',
                'status', e_after -> 'status', 'url', e_after -> 'url')
            WHEN event = 'deployment.finished' THEN jsonb_build_object(
                'id', e_entity_id, 'environment', e_after -> 'environment', 'provider', e_after -> 'provider',
                'external_id', e_after -> 'external_id', 'ref', e_after -> 'git_ref',
                'commit', e_after -> 'commit_sha', 'status', e_after -> 'status', 'url', e_after -> 'url',
                'release', e_after -> 'release')
            WHEN event = 'snapshot.restored' THEN jsonb_build_object(
                'snapshot', e_entity_id, 'pre_restore_snapshot', e_after -> 'pre_restore_snapshot',
                'kinds', e_after -> 'kinds')
        END))
$$;

-- As in V7, and: each event gets one sequence number (shared by every
-- connection it goes to, in the order the entries were written) and names
-- its object. A workflow's own commands (source automation, or agent before
-- this version) are still not sent back to it.
CREATE OR REPLACE FUNCTION automation_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM integration_connection WHERE provider = 'n8n' AND enabled) THEN
        RETURN NULL;
    END IF;
    WITH events AS (
        SELECT n.*, automation_event(n.action, n.before, n.after) AS event
        FROM new_rows n
        WHERE n.project_id IS NOT NULL
    ), targets AS (
        SELECT e.*, c.id AS connection_id
        FROM events e
        JOIN integration_connection c
          ON c.project_id = e.project_id AND c.provider = 'n8n' AND c.enabled
         AND jsonb_typeof(c.config -> 'events') = 'array' AND c.config -> 'events' ? e.event
        WHERE e.event IS NOT NULL
          AND NOT (e.source IN ('automation', 'agent') AND e.actor = coalesce(c.config ->> 'agent', c.connection_key))
    ), numbered AS MATERIALIZED (
        SELECT t.id AS audit_id, automation_next_seq(t.project_id) AS seq
        FROM (SELECT DISTINCT id, project_id FROM targets ORDER BY id) t
    ), captured AS (
        INSERT INTO automation_delivery (connection_id, project_id, event, audit_id, payload, seq, entity)
        SELECT t.connection_id, t.project_id, t.event, t.id,
               automation_payload(t.event, t.id, t.project_id, t.at, t.actor, t.source, t.entity_id, t.entity_key,
                                  t.before, t.after),
               nb.seq, t.entity_kind || ':' || coalesce(t.entity_id::text, t.entity_key, '')
        FROM targets t JOIN numbered nb ON nb.audit_id = t.id
        ORDER BY nb.seq, t.connection_id
        RETURNING id, connection_id
    )
    INSERT INTO sync_job (connection_id, key)
    SELECT connection_id, 'delivery:' || id FROM captured
    ON CONFLICT (connection_id, key) DO NOTHING;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('mc_sync', '');
    END IF;
    RETURN NULL;
END $$;
