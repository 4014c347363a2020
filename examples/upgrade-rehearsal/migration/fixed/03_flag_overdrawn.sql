-- Step 3, fixed: only a negative balance is overdrawn.
BEGIN;
UPDATE pgbench_accounts SET status = 'overdrawn' WHERE abalance < 0;
INSERT INTO schema_migrations (version, name) VALUES (3, 'flag_overdrawn');
COMMIT;
