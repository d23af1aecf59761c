-- Agent dispatch: an agent claims the highest-priority ready task it can take
-- (`mctl dispatch next`, `Store::dispatch_next`).

-- Dispatch order of priorities: urgent first, none last.
CREATE FUNCTION task_priority_order(priority text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END
$$;

-- The unassigned open cards of a lane in dispatch order (priority, due date
-- with undated last, oldest first), so the best candidate of a 100,000-task
-- project is the first entry of one index scan per ready lane. Tasks already
-- assigned to the claiming agent are found through task_assignee_lane.
CREATE INDEX task_dispatch ON task (lane_id, task_priority_order(priority), due_on, created_at, id)
    WHERE NOT archived AND assignee_id IS NULL;

-- An agent's load (its tasks in started lanes) counted lane by lane, without
-- reading the tasks it finished long ago. Replaces the single-column index.
CREATE INDEX task_assignee_lane ON task (assignee_id, lane_id) WHERE NOT archived AND assignee_id IS NOT NULL;
DROP INDEX task_assignee;

-- A timestamp as the program's JSON writes it (RFC 3339 in UTC, trailing
-- zeros of the fraction dropped), so audit entries written here read like
-- the ones written by the repository code.
CREATE FUNCTION rfc3339_utc(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '\.?0+$', '') || 'Z'
$$;

-- A task as the audit log records it: the JSON of the program's `Task`
-- (the columns of TASK_COLUMNS in src/store/rows.rs). tests/dispatch.rs
-- checks that the two stay the same. PL/pgSQL so its plan is kept for the
-- session: a SQL function that reads tables is planned again by every
-- statement that calls it, which made it a third of a claim's time.
CREATE FUNCTION task_audit_json(task_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'id', t.id, 'project_id', t.project_id, 'key', t.task_key, 'number', t.number, 'title', t.title,
            'description', t.description, 'lane_id', t.lane_id, 'lane', l.name, 'lane_category', l.category,
            'rank', t.rank, 'priority', t.priority, 'assignee_id', t.assignee_id, 'assignee', a.handle,
            'labels', to_jsonb(t.labels), 'due_on', t.due_on, 'cycle_id', t.cycle_id, 'cycle', c.name,
            'modules', to_jsonb(ARRAY(SELECT m.name FROM task_module tm JOIN module m ON m.id = tm.module_id
                                      WHERE tm.task_id = t.id ORDER BY m.name)),
            'archived', t.archived, 'version', t.version, 'created_by', t.created_by,
            'created_at', rfc3339_utc(t.created_at), 'updated_at', rfc3339_utc(t.updated_at))
        FROM task t
        JOIN lane l ON l.id = t.lane_id
        LEFT JOIN agent a ON a.id = t.assignee_id
        LEFT JOIN cycle c ON c.id = t.cycle_id
        WHERE t.id = task_audit_json.task_id);
END
$$;

-- One claim, start to finish, in the caller's transaction. It runs on the
-- server in one round trip because claims in a project queue on the lane
-- rows (a move locks the lanes it touches): the less time between taking
-- those locks and the commit, the more claims per second. Each statement
-- below sees the rows committed before it started (READ COMMITTED), which is
-- what makes the lock-then-read order safe.
--
-- outcome: claimed | nothing_ready | at_capacity | unavailable | unknown_agent | unknown_project
--          | no_started_lane
CREATE FUNCTION dispatch_claim(p_project_id bigint, p_handle text, p_actor text, p_source text,
                               p_correlation_id uuid, p_reason text, p_rank_step bigint, p_channel text)
RETURNS TABLE (outcome text, agent_status text, in_progress bigint, capacity integer, task jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claimer     agent%ROWTYPE;
    load        bigint;
    destination bigint;
    ready       bigint[];
    candidate   bigint;
    before_json jsonb;
    after_json  jsonb;
    new_rank    bigint;
    entry_id    bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM project p WHERE p.id = p_project_id) THEN
        outcome := 'unknown_project';
        RETURN NEXT;
        RETURN;
    END IF;
    -- The agent row first: one agent's claims queue here, so its load is
    -- counted after the previous claim committed. A claim is also a sign of
    -- life; away and offline agents are refused and nothing is written.
    UPDATE agent a SET last_seen_at = now()
    WHERE a.handle = p_handle AND a.status IN ('available', 'busy')
    RETURNING a.* INTO claimer;
    IF NOT FOUND THEN
        SELECT a.status INTO agent_status FROM agent a WHERE a.handle = p_handle;
        outcome := CASE WHEN FOUND THEN 'unavailable' ELSE 'unknown_agent' END;
        RETURN NEXT;
        RETURN;
    END IF;
    agent_status := claimer.status;
    capacity := claimer.capacity;

    -- Capacity counts started work in every project: an agent is one worker.
    -- Lane by lane, so the agent's finished tasks are never read.
    SELECT coalesce(sum(n.n), 0) INTO load
    FROM lane l CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM task t WHERE t.assignee_id = claimer.id AND t.lane_id = l.id AND NOT t.archived) n
    WHERE l.category = 'started';
    in_progress := load;
    IF load >= claimer.capacity THEN
        outcome := 'at_capacity';
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT l.id INTO destination FROM lane l
    WHERE l.project_id = p_project_id AND l.category = 'started' ORDER BY l.position LIMIT 1;
    IF NOT FOUND THEN
        outcome := 'no_started_lane';
        RETURN NEXT;
        RETURN;
    END IF;

    -- Every lane the claim may touch, in id order, before any task row: the
    -- locking rule of src/store/tasks.rs, which keeps claims and moves free
    -- of deadlocks.
    SELECT array_agg(locked.id ORDER BY locked.id) FILTER (WHERE locked.category = 'unstarted') INTO ready
    FROM (SELECT l.id, l.category FROM lane l
          WHERE l.project_id = p_project_id AND (l.category = 'unstarted' OR l.id = destination)
          ORDER BY l.id FOR NO KEY UPDATE) locked;

    -- The best ready task: the first unassigned one of each ready lane (in
    -- index order) and the agent's own first one, compared. Rows another
    -- transaction holds (an edit in flight) are skipped, never waited for.
    SELECT c.id INTO candidate
    FROM (
        SELECT u.* FROM unnest(coalesce(ready, '{}')) AS r(lane_id) CROSS JOIN LATERAL (
            SELECT t.id, task_priority_order(t.priority) AS o, t.due_on, t.created_at
            FROM task t
            WHERE t.lane_id = r.lane_id AND NOT t.archived AND t.assignee_id IS NULL
              AND (cardinality(claimer.skills) = 0 OR cardinality(t.labels) = 0 OR t.labels && claimer.skills)
              AND NOT EXISTS (SELECT 1 FROM handoff h WHERE h.task_id = t.id AND h.kind = 'blocked'
                              AND h.state IN ('open', 'accepted'))
            ORDER BY task_priority_order(t.priority), t.due_on, t.created_at, t.id
            LIMIT 1 FOR UPDATE OF t SKIP LOCKED) u
        UNION ALL
        SELECT m.* FROM (
            SELECT t.id, task_priority_order(t.priority) AS o, t.due_on, t.created_at
            FROM task t
            WHERE t.assignee_id = claimer.id AND t.lane_id = ANY (coalesce(ready, '{}')) AND NOT t.archived
              AND NOT EXISTS (SELECT 1 FROM handoff h WHERE h.task_id = t.id AND h.kind = 'blocked'
                              AND h.state IN ('open', 'accepted'))
            ORDER BY task_priority_order(t.priority), t.due_on, t.created_at, t.id
            LIMIT 1 FOR UPDATE OF t SKIP LOCKED) m
    ) c
    ORDER BY c.o, c.due_on, c.created_at, c.id
    LIMIT 1;
    IF candidate IS NULL THEN
        outcome := 'nothing_ready';
        RETURN NEXT;
        RETURN;
    END IF;

    before_json := task_audit_json(candidate);
    SELECT coalesce(max(t.rank), 0) + p_rank_step INTO new_rank
    FROM task t WHERE t.project_id = p_project_id AND t.lane_id = destination AND NOT t.archived;
    UPDATE task SET lane_id = destination, rank = new_rank, assignee_id = claimer.id,
                    version = version + 1, updated_at = now()
    WHERE id = candidate;
    after_json := task_audit_json(candidate);

    INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, entity_id, entity_key,
                             before, after, correlation_id, reason)
    VALUES (p_project_id, p_actor, p_source, 'task.claim', 'task', candidate, after_json ->> 'key',
            before_json, after_json, p_correlation_id, p_reason)
    RETURNING id INTO entry_id;
    PERFORM pg_notify(p_channel, json_build_object('project_id', p_project_id, 'kind', 'task', 'id', candidate,
                                                   'action', 'task.claim', 'audit_id', entry_id)::text);
    outcome := 'claimed';
    in_progress := load + 1;
    task := after_json;
    RETURN NEXT;
END
$$;

-- n8n: a claim moves the task into a started lane, so it is sent as
-- `task.moved` (with the new assignee in its data). Every earlier mapping stays.
CREATE OR REPLACE FUNCTION automation_event(action text, before jsonb, after jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN action = 'task.create' THEN 'task.created'
        WHEN action IN ('task.move', 'task.claim') THEN 'task.moved'
        WHEN action = 'task.assign' THEN 'task.assigned'
        WHEN action = 'handoff.open' THEN 'handoff.opened'
        WHEN action = 'pipeline.report' AND after ->> 'status' = 'failed'
             AND coalesce(before ->> 'status', '') <> 'failed' THEN 'pipeline.failed'
        WHEN action = 'deployment.report' AND after ->> 'status' IN ('success', 'failed', 'cancelled')
             AND coalesce(before ->> 'status', '') IS DISTINCT FROM after ->> 'status' THEN 'deployment.finished'
        WHEN action = 'snapshot.restore' THEN 'snapshot.restored'
    END
$$;
