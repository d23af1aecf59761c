-- Agent load (tasks in started lanes per assignee) reads only the board index
-- when it also carries the assignee.
DROP INDEX task_board;
CREATE UNIQUE INDEX task_board ON task (project_id, lane_id, rank) INCLUDE (assignee_id) WHERE NOT archived;
