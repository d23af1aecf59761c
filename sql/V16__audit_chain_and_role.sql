-- Who wrote an audit entry, as the database knows it, and a hash chain that
-- makes a removed or edited entry visible.
--
-- `db_role` is `session_user`, set by the trigger whatever the client sends:
-- when operators connect as their own roles, the log names them without
-- trusting the client's `--operator` (kept in `actor` as the display name).
--
-- Each entry's `hash` is sha256 of the previous entry's hash in its chain
-- (one chain per project, one for entries without a project) and of the
-- entry's own fields; `chain_seq` numbers the chain without gaps. The head
-- of each chain lives in `audit_chain`: updating that row serialises the
-- project's audited writes for the rest of their transaction (they are
-- short), so the chain never forks, and a REPEATABLE READ writer that races
-- gets a serialization failure, which the store retries. `mctl audit
-- verify` recomputes every link.

CREATE TABLE audit_chain (
    scope bigint PRIMARY KEY,           -- the project id, 0 for entries without one
    seq   bigint NOT NULL DEFAULT 0,
    hash  bytea  NOT NULL DEFAULT ''::bytea
);

ALTER TABLE audit_entry
    ADD COLUMN db_role text,
    ADD COLUMN chain_seq bigint,
    ADD COLUMN hash bytea;

-- What an entry's link covers. Text forms that do not depend on session
-- settings: the time in UTC, jsonb's canonical text.
CREATE FUNCTION audit_entry_digest(prev bytea, seq bigint, e audit_entry) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || convert_to(concat_ws(E'\x1f',
        seq::text, e.id::text, coalesce(e.project_id::text, ''),
        to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        e.actor, coalesce(e.db_role, ''), e.source, e.action, e.entity_kind,
        coalesce(e.entity_id::text, ''), coalesce(e.entity_key, ''),
        coalesce(e.before::text, ''), coalesce(e.after::text, ''),
        e.correlation_id::text, coalesce(e.reason, '')), 'UTF8'))
$$;

CREATE FUNCTION audit_entry_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chain_scope bigint := coalesce(NEW.project_id, 0);
BEGIN
    NEW.db_role := session_user;
    -- One statement takes the head's row lock and moves it on.
    UPDATE audit_chain SET seq = seq + 1, hash = audit_entry_digest(hash, seq + 1, NEW)
     WHERE scope = chain_scope RETURNING seq, hash INTO NEW.chain_seq, NEW.hash;
    IF NOT FOUND THEN
        INSERT INTO audit_chain (scope) VALUES (chain_scope) ON CONFLICT DO NOTHING;
        UPDATE audit_chain SET seq = seq + 1, hash = audit_entry_digest(hash, seq + 1, NEW)
         WHERE scope = chain_scope RETURNING seq, hash INTO NEW.chain_seq, NEW.hash;
    END IF;
    RETURN NEW;
END
$$;

-- The entries already written join their chains in id order, as written by
-- the role that ran them (unknown: recorded as empty).
ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_no_update;
DO $$
DECLARE
    e audit_entry;
    chain_scope bigint;
    head audit_chain;
BEGIN
    FOR e IN SELECT * FROM audit_entry ORDER BY coalesce(project_id, 0), id LOOP
        chain_scope := coalesce(e.project_id, 0);
        INSERT INTO audit_chain (scope) VALUES (chain_scope) ON CONFLICT DO NOTHING;
        SELECT * INTO head FROM audit_chain WHERE scope = chain_scope;
        e.chain_seq := head.seq + 1;
        e.hash := audit_entry_digest(head.hash, e.chain_seq, e);
        UPDATE audit_entry SET chain_seq = e.chain_seq, hash = e.hash WHERE id = e.id;
        UPDATE audit_chain SET seq = e.chain_seq, hash = e.hash WHERE scope = chain_scope;
    END LOOP;
END
$$;
ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_no_update;

ALTER TABLE audit_entry ALTER COLUMN chain_seq SET NOT NULL, ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_entry_chain ON audit_entry ((coalesce(project_id, 0)), chain_seq);

CREATE TRIGGER audit_entry_seal BEFORE INSERT ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_seal();
