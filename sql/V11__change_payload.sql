-- The payload of a change notification on `mc_change`: ids only, the shape
-- every listener parses (the console's `ChangeNote`). One definition for
-- every sender: the audit code, restores, sync imports and claims.
CREATE FUNCTION change_payload(p_project_id bigint, p_kind text, p_id bigint, p_action text, p_audit_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT json_build_object('project_id', p_project_id, 'kind', p_kind, 'id', p_id, 'action', p_action,
                             'audit_id', p_audit_id)::text
$$;

-- As in V10, with the payload from change_payload.
CREATE OR REPLACE FUNCTION announce_committed_change(p_channel text, p_audit_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_notify(p_channel, change_payload(e.project_id, e.entity_kind, e.entity_id, e.action, e.id))
    FROM audit_entry e WHERE e.id = p_audit_id;
END $$;
