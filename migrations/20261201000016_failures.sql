-- The operator console's failures: everything that failed for good, across tenants.
-- An operator may discard one (it stays, marked, and leaves the list) or retry it.
ALTER TABLE bursts ADD COLUMN discarded_at timestamptz;
ALTER TABLE deliveries ADD COLUMN discarded_at timestamptz;
ALTER TABLE outbox ADD COLUMN discarded_at timestamptz;
ALTER TABLE media ADD COLUMN discarded_at timestamptz;

-- The list reads only failed rows, newest first: small partial indexes, untouched by the
-- hot path's rows (which are never failed when written).
CREATE INDEX bursts_failed_idx ON bursts (updated_at DESC) WHERE status = 'failed' AND discarded_at IS NULL;
CREATE INDEX deliveries_failed_idx ON deliveries (updated_at DESC) WHERE status = 'failed' AND discarded_at IS NULL;
CREATE INDEX outbox_failed_idx ON outbox (status_at DESC) WHERE status = 'failed' AND discarded_at IS NULL;
CREATE INDEX media_failed_idx ON media (updated_at DESC) WHERE status = 'failed' AND discarded_at IS NULL;
