-- Step 4: constrain the status and give the reports a view.
BEGIN;
ALTER TABLE pgbench_accounts
    ADD CONSTRAINT pgbench_accounts_status_check CHECK (status IN ('active', 'overdrawn'));
CREATE VIEW overdrawn_accounts AS
    SELECT aid, bid, abalance FROM pgbench_accounts WHERE status = 'overdrawn';
INSERT INTO schema_migrations (version, name) VALUES (4, 'status_check');
COMMIT;
