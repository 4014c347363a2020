-- Step 3: flag the overdrawn accounts.
--
-- THIS STEP IS DELIBERATELY WRONG, for the rehearsal: an account with a zero
-- balance is not overdrawn, but `<=` flags it too -- and most accounts have a
-- zero balance, so the statement rewrites nearly every row of the table.
-- It runs without an error; only the data tells. The fixed step is
-- fixed/03_flag_overdrawn.sql.
BEGIN;
UPDATE pgbench_accounts SET status = 'overdrawn' WHERE abalance <= 0;
INSERT INTO schema_migrations (version, name) VALUES (3, 'flag_overdrawn');
COMMIT;
