-- Lane counts without a lane-row write per task change.
--
-- Until now the count triggers updated lane.open_count in place, so every
-- transaction that moved, created or archived a task held its lanes' rows
-- until it committed, and all claims of a project (`dispatch_claim`: Ready ->
-- In Progress) queued behind one another on the same two rows. Now a change
-- appends its per-lane deltas to lane_count_delta, which takes no lock anyone
-- waits for, and a lane's count is lane.open_count (the folded part) plus its
-- pending deltas: `LANE_OPEN_COUNT` in src/store/rows.rs. Every 64th delta
-- row folds what is pending back into lane.open_count, skipping lanes another
-- transaction holds, so the pending list stays short. Both halves change in
-- one transaction, so a reader's snapshot sees a lane's count exactly.

CREATE SEQUENCE lane_count_delta_seq;

-- No primary key: rows are only ever summed by lane and deleted by a fold,
-- and one index fewer is one write fewer per task change.
CREATE TABLE lane_count_delta (
    id      bigint  NOT NULL DEFAULT nextval('lane_count_delta_seq'),
    lane_id bigint  NOT NULL REFERENCES lane (id) ON DELETE CASCADE,
    delta   integer NOT NULL
);
CREATE INDEX lane_count_delta_lane ON lane_count_delta (lane_id) INCLUDE (delta);

-- Folds pending deltas into lane.open_count. One fold at a time (the
-- advisory lock; a transaction that cannot have it leaves the work to the
-- next one), and never waits for a lane: lanes held by a move are skipped
-- and folded later. Deltas of transactions still in flight are not visible,
-- so they stay pending.
CREATE FUNCTION lane_count_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- 0x6d63_746c_0002: next to the migration lock (…_0001, src/store/migrate.rs).
    IF NOT pg_try_advisory_xact_lock(120273922424834) THEN
        RETURN;
    END IF;
    WITH lanes AS (
        SELECT l.id FROM lane l
        WHERE l.id IN (SELECT DISTINCT d.lane_id FROM lane_count_delta d)
        ORDER BY l.id FOR NO KEY UPDATE SKIP LOCKED
    ), folded AS (
        DELETE FROM lane_count_delta d USING lanes WHERE d.lane_id = lanes.id
        RETURNING d.lane_id, d.delta
    )
    UPDATE lane l SET open_count = l.open_count + f.delta
    FROM (SELECT lane_id, sum(delta)::integer AS delta FROM folded GROUP BY lane_id) f
    WHERE l.id = f.lane_id;
END $$;

-- Called by the count triggers after they appended `appended` delta rows:
-- folds when the sequence passed a multiple of 64.
CREATE FUNCTION lane_count_appended(appended integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF appended > 0 AND currval('lane_count_delta_seq') / 64 > (currval('lane_count_delta_seq') - appended) / 64 THEN
        PERFORM lane_count_fold();
    END IF;
END $$;

CREATE OR REPLACE FUNCTION task_lane_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    appended integer;
BEGIN
    INSERT INTO lane_count_delta (lane_id, delta)
    SELECT lane_id, count(*) FROM new_rows WHERE NOT archived GROUP BY lane_id;
    GET DIAGNOSTICS appended = ROW_COUNT;
    PERFORM lane_count_appended(appended);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION task_lane_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    appended integer;
BEGIN
    INSERT INTO lane_count_delta (lane_id, delta)
    SELECT lane_id, sum(d) FROM (
        SELECT lane_id, -1 AS d FROM old_rows WHERE NOT archived
        UNION ALL
        SELECT lane_id, 1 FROM new_rows WHERE NOT archived
    ) changes GROUP BY lane_id HAVING sum(d) <> 0;
    GET DIAGNOSTICS appended = ROW_COUNT;
    PERFORM lane_count_appended(appended);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION task_lane_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    appended integer;
BEGIN
    INSERT INTO lane_count_delta (lane_id, delta)
    SELECT lane_id, -count(*) FROM old_rows WHERE NOT archived GROUP BY lane_id;
    GET DIAGNOSTICS appended = ROW_COUNT;
    PERFORM lane_count_appended(appended);
    RETURN NULL;
END
$$;

-- Claims no longer lock lanes. With the counts above, nothing a claim writes
-- is shared with another claim except the destination lane's ranks, and
-- those are kept apart without a lock: a claim puts its task one step below
-- the bottom card it sees plus an offset from this sequence (1 to 4095,
-- never 0), so two claims that saw the same bottom card never pick the same
-- rank, and neither picks the one a move or create (which hold the lane and
-- use the offset 0) takes. Should a rank still be taken when the task is
-- written (a renumbering of the lane meanwhile), the claim takes the next
-- one; the unique board index is what detects it.
CREATE SEQUENCE dispatch_rank_offset MINVALUE 1 MAXVALUE 4095 CYCLE;

-- A change that has committed already, announced on `p_channel` with the
-- payload audit::record sends (ids only). A transaction that notifies holds
-- the server's notification lock from before its commit record until that is
-- flushed, so claims that notified queued on that lock one flush at a time;
-- claims now commit without it and announce afterwards in a transaction of
-- their own that does not wait for the flush: a notification is not durable
-- in any case (it is lost with the listener's connection).
CREATE FUNCTION announce_committed_change(p_channel text, p_audit_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_notify(p_channel, json_build_object('project_id', e.project_id, 'kind', e.entity_kind,
                                                   'id', e.entity_id, 'action', e.action, 'audit_id', e.id)::text)
    FROM audit_entry e WHERE e.id = p_audit_id;
END $$;

-- As in V9 but for the lane locks (gone), the rank (above) and the
-- notification (left to the caller, announce_committed_change, so the claim
-- returns its audit entry id instead). A claim waits for no lane, so it can
-- be part of no deadlock with a move (a move locks lanes, then the task; a
-- claim skips locked tasks).
DROP FUNCTION dispatch_claim(bigint, text, text, text, uuid, text, bigint, text);
CREATE FUNCTION dispatch_claim(p_project_id bigint, p_handle text, p_actor text, p_source text,
                               p_correlation_id uuid, p_reason text, p_rank_step bigint)
RETURNS TABLE (outcome text, agent_status text, in_progress bigint, capacity integer, task jsonb,
               audit_id bigint)
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
    rank_tries  integer := 0;
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
    SELECT array_agg(l.id) INTO ready FROM lane l WHERE l.project_id = p_project_id AND l.category = 'unstarted';

    -- The best ready task: the first unassigned one of each ready lane (in
    -- index order) and the agent's own first one, compared. Rows another
    -- transaction holds (a claim or an edit in flight) are skipped, never
    -- waited for; a row that changed before it could be locked is checked
    -- again and passed over when it no longer qualifies.
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
    LOOP
        SELECT coalesce(max(t.rank), 0) + p_rank_step + nextval('dispatch_rank_offset') INTO new_rank
        FROM task t WHERE t.project_id = p_project_id AND t.lane_id = destination AND NOT t.archived;
        BEGIN
            UPDATE task SET lane_id = destination, rank = new_rank, assignee_id = claimer.id,
                            version = version + 1, updated_at = now()
            WHERE id = candidate;
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            -- The rank was taken meanwhile; the bottom card is now past it.
            rank_tries := rank_tries + 1;
            IF rank_tries >= 8 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    after_json := task_audit_json(candidate);

    INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, entity_id, entity_key,
                             before, after, correlation_id, reason)
    VALUES (p_project_id, p_actor, p_source, 'task.claim', 'task', candidate, after_json ->> 'key',
            before_json, after_json, p_correlation_id, p_reason)
    RETURNING id INTO audit_id;
    outcome := 'claimed';
    in_progress := load + 1;
    task := after_json;
    RETURN NEXT;
END
$$;
