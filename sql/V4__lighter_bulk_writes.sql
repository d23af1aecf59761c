-- Bulk writes (a restore puts back 100,000 tasks and audits each) pay for
-- every index on the rows they touch. Two indexes no query uses go:
-- tasks by update time (review and stale-task lists go through the board
-- index by lane) and audit entries by entity id (history is read by key).
DROP INDEX IF EXISTS task_project_updated;
DROP INDEX IF EXISTS audit_entity;

-- With no index on updated_at, an edit that leaves lane, rank, assignee and
-- the other indexed columns alone can be a HOT update if its page has room:
-- leave a fifth of each new task page free for that.
ALTER TABLE task SET (fillfactor = 80);

-- Deleting a task checks that no handoff still refers to it: without an index
-- on the referring columns that is a scan of every handoff per task.
CREATE INDEX handoff_task ON handoff (project_id, task_id);
