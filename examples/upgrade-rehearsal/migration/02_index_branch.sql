-- Step 2: the new reports look accounts up by branch.
BEGIN;
CREATE INDEX pgbench_accounts_bid_idx ON pgbench_accounts (bid);
INSERT INTO schema_migrations (version, name) VALUES (2, 'index_branch');
COMMIT;
