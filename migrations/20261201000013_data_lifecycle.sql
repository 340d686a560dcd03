-- Data lifecycle (retention, erasure, export).
--
-- An erased lead stays as an anonymous shell: its row (renamed, so the same phone or
-- lead id afterwards starts a new lead), its bursts (status and times, the counts a
-- dashboard shows) and what was erased, counted. Everything personal is gone.
ALTER TABLE leads ADD COLUMN erased_at timestamptz, ADD COLUMN erased jsonb;

-- Retention deletes by age in small batches. BRIN indexes cost next to nothing on
-- insert (these tables are append-mostly, so age follows the physical order) and let
-- each batch find its old rows without scanning the table.
CREATE INDEX messages_created_brin ON messages USING brin (created_at);
CREATE INDEX media_created_brin ON media USING brin (created_at);
CREATE INDEX inbound_events_created_brin ON inbound_events USING brin (created_at);
CREATE INDEX webhook_payloads_created_brin ON webhook_payloads USING brin (created_at);
CREATE INDEX idempotency_keys_created_brin ON idempotency_keys USING brin (created_at);
CREATE INDEX deliveries_created_brin ON deliveries USING brin (created_at);
CREATE INDEX outbox_created_brin ON outbox USING brin (created_at);
CREATE INDEX mail_attachments_created_brin ON mail_attachments USING brin (created_at);

-- Erasure finds a lead's bursts (all of them, not only the live ones) by lead.
CREATE INDEX bursts_lead_idx ON bursts (lead_id);
