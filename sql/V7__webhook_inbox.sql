-- Webhook ingress and n8n automation: deliveries received from providers (the
-- inbox), and events sent to n8n workflows (the automation outbox).

-- One row per accepted delivery, deduplicated by the provider's delivery id
-- (or a hash of the body where the provider sends none). Receiving only
-- queues reconcile keys; the payload is kept for operators to read, never
-- applied as such.
CREATE TABLE webhook_inbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id bigint      NOT NULL REFERENCES integration_connection (id) ON DELETE CASCADE,
    delivery_key  text        NOT NULL CHECK (length(delivery_key) BETWEEN 1 AND 200),
    event         text        CHECK (length(event) <= 100),
    received_at   timestamptz NOT NULL DEFAULT now(),
    payload       jsonb,
    payload_bytes integer     NOT NULL,
    -- The reconcile keys the delivery queued.
    keys          text[]      NOT NULL DEFAULT '{}',
    -- For inbound automation commands: what applying it answered.
    result        jsonb,
    UNIQUE (connection_id, delivery_key)
);
CREATE INDEX webhook_inbox_received ON webhook_inbox (received_at);

-- Events for n8n workflows. Written in the same transaction as the change
-- (by the trigger below, from the audit entry), or by the n8n connection's
-- periodic check for derived events (handoff overdue, release ready), which
-- name their subject so each is sent at most once.
CREATE TABLE automation_delivery (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id bigint      NOT NULL REFERENCES integration_connection (id) ON DELETE CASCADE,
    project_id    bigint      NOT NULL REFERENCES project (id),
    event         text        NOT NULL CHECK (event ~ '^[a-z_]+\.[a-z_]+$'),
    audit_id      bigint,
    subject       text,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    last_status   integer,
    last_error    text,
    delivered_at  timestamptz
);
CREATE INDEX automation_delivery_connection ON automation_delivery (connection_id, created_at DESC);
CREATE UNIQUE INDEX automation_delivery_subject ON automation_delivery (connection_id, event, subject)
    WHERE subject IS NOT NULL;

-- The automation event an audit entry stands for, if any.
CREATE FUNCTION automation_event(action text, before jsonb, after jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN action = 'task.create' THEN 'task.created'
        WHEN action = 'task.move' THEN 'task.moved'
        WHEN action = 'task.assign' THEN 'task.assigned'
        WHEN action = 'handoff.open' THEN 'handoff.opened'
        WHEN action = 'pipeline.report' AND after ->> 'status' = 'failed'
             AND coalesce(before ->> 'status', '') <> 'failed' THEN 'pipeline.failed'
        WHEN action = 'deployment.report' AND after ->> 'status' IN ('success', 'failed', 'cancelled')
             AND coalesce(before ->> 'status', '') IS DISTINCT FROM after ->> 'status' THEN 'deployment.finished'
        WHEN action = 'snapshot.restore' THEN 'snapshot.restored'
    END
$$;

-- The event's data: ids and the fields a workflow routes on, never secrets
-- (descriptions and free text beyond titles and reasons are left out).
CREATE FUNCTION automation_payload(event text, e_id bigint, e_project_id bigint, e_at timestamptz, e_actor text,
                                   e_source text, e_entity_id bigint, e_entity_key text, e_before jsonb, e_after jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'project', (SELECT key FROM project WHERE id = e_project_id),
        'actor', jsonb_build_object('name', e_actor, 'source', e_source),
        'audit_id', e_id,
        'at', e_at,
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
                'due_at', e_after -> 'due_at')
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

-- Captures subscribed events in the transaction that made the change, and
-- queues their delivery on the n8n connection. Entries written by a
-- connection's own inbound commands (source agent, actor = the connection's
-- identity) are not sent back to it.
CREATE FUNCTION automation_capture() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ), captured AS (
        INSERT INTO automation_delivery (connection_id, project_id, event, audit_id, payload)
        SELECT c.id, e.project_id, e.event, e.id,
               automation_payload(e.event, e.id, e.project_id, e.at, e.actor, e.source, e.entity_id, e.entity_key,
                                  e.before, e.after)
        FROM events e
        JOIN integration_connection c
          ON c.project_id = e.project_id AND c.provider = 'n8n' AND c.enabled
         AND jsonb_typeof(c.config -> 'events') = 'array' AND c.config -> 'events' ? e.event
        WHERE e.event IS NOT NULL
          AND NOT (e.source = 'agent' AND e.actor = coalesce(c.config ->> 'agent', c.connection_key))
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

CREATE TRIGGER audit_entry_automation AFTER INSERT ON audit_entry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION automation_capture();

-- An n8n connection's periodic check (derived events) runs as its `pull`
-- key: queue it when the connection is added, and for those that exist.
CREATE FUNCTION automation_schedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.provider = 'n8n' THEN
        INSERT INTO sync_job (connection_id, key) VALUES (NEW.id, 'pull') ON CONFLICT (connection_id, key) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER integration_connection_automation AFTER INSERT ON integration_connection
    FOR EACH ROW EXECUTE FUNCTION automation_schedule();

INSERT INTO sync_job (connection_id, key)
SELECT id, 'pull' FROM integration_connection WHERE provider = 'n8n'
ON CONFLICT (connection_id, key) DO NOTHING;
