-- `mctl db setup-roles`: group roles that carry mctl's permissions, so the
-- database enforces who may do what, whatever client is used. Idempotent;
-- run by a superuser, or on a managed server by the role that owns mctl's
-- tables and may create roles (it is made a member of mctl_owner).
--
--   mctl_owner     owns every table, sequence and function; no login. Only
--                  it (and superusers) can alter tables, disable triggers,
--                  drop them, or write the audit chain's head.
--   mctl_viewer    reads everything.
--   mctl_operator  reads and writes the board, handoffs, planning, delivery
--                  and snapshots; may append audit entries, never change or
--                  remove one.
--   mctl_agent     as an operator (MCP policy narrows it further).
--   mctl_sync      as an operator (sync workers and webhook receivers).
--   mctl_admin     an operator who may grant the roles above (`mctl db grant`).
--
-- Group roles are the cluster's; grants and ownership are this database's.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['mctl_owner', 'mctl_viewer', 'mctl_operator', 'mctl_agent', 'mctl_sync', 'mctl_admin'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- made already (perhaps by another database's set-up at the same moment)
        END;
    END LOOP;
END
$$;

-- The one running this takes objects over on the owner's behalf.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'mctl_owner', 'MEMBER') THEN
        EXECUTE format('GRANT mctl_owner TO %I', current_user);
    END IF;
END
$$;

-- Every object mctl made goes to mctl_owner.
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.relname AS name, c.relkind AS kind FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
           AND pg_get_userbyid(c.relowner) <> 'mctl_owner'
           AND NOT (c.relkind = 'S' AND EXISTS (
                 SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format(CASE object.kind WHEN 'S' THEN 'ALTER SEQUENCE %I OWNER TO mctl_owner'
                                        WHEN 'v' THEN 'ALTER VIEW %I OWNER TO mctl_owner'
                                        WHEN 'm' THEN 'ALTER MATERIALIZED VIEW %I OWNER TO mctl_owner'
                                        ELSE 'ALTER TABLE %I OWNER TO mctl_owner' END, object.name);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'mctl_owner'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO mctl_owner', object.name);
    END LOOP;
END
$$;

-- Nobody but these roles gets anything.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;

-- Later migrations run as mctl_owner (PostgreSQL 15 gives nobody CREATE on public).
GRANT USAGE, CREATE ON SCHEMA public TO mctl_owner;
GRANT USAGE ON SCHEMA public TO mctl_viewer, mctl_operator, mctl_agent, mctl_sync, mctl_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mctl_viewer;
GRANT mctl_viewer TO mctl_operator, mctl_agent, mctl_sync;
GRANT mctl_operator TO mctl_admin;
GRANT mctl_viewer, mctl_operator, mctl_agent, mctl_sync TO mctl_admin WITH ADMIN OPTION;

-- Writers: every table, except that the audit log is append-only for them
-- and its chain head is the owner's alone.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mctl_operator, mctl_agent, mctl_sync;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entry FROM mctl_operator, mctl_agent, mctl_sync;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_chain FROM mctl_operator, mctl_agent, mctl_sync;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mctl_operator, mctl_agent, mctl_sync;

-- The chain's head is moved by the seal trigger, with the owner's rights.
ALTER FUNCTION audit_entry_seal() SECURITY DEFINER SET search_path = public, pg_temp;

-- What later migrations (run as mctl_owner) create gets the same grants.
ALTER DEFAULT PRIVILEGES FOR ROLE mctl_owner IN SCHEMA public GRANT SELECT ON TABLES TO mctl_viewer;
ALTER DEFAULT PRIVILEGES FOR ROLE mctl_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO mctl_operator, mctl_agent, mctl_sync;
ALTER DEFAULT PRIVILEGES FOR ROLE mctl_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO mctl_operator, mctl_agent, mctl_sync;
