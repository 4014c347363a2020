-- Step 1: accounts get a status column.
-- PostgreSQL 11+ adds a column with a constant default without rewriting the
-- table, so this step changes little more than the catalog and the WAL.
BEGIN;
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgbench_accounts ADD COLUMN status text NOT NULL DEFAULT 'active';
INSERT INTO schema_migrations (version, name) VALUES (1, 'add_status');
COMMIT;
