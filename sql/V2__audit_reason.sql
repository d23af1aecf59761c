-- Why a change was made, when it is more than the action says: "undo of #812",
-- "bulk move of 40 tasks", "restore from snapshot 9". Empty for ordinary edits.
ALTER TABLE audit_entry ADD COLUMN reason text CHECK (length(reason) <= 500);
