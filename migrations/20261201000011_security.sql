-- Issue 11 (security): media handles apart from URLs, webhook payloads stored once.

-- Provider media handles (Telegram file ids, Meta media ids, Evolution keys, e-mail
-- attachments) leave the user-visible `url` for a column of their own (issue 11): a URL
-- from a payload can no longer be taken for a handle, and a handle names no channel — the
-- worker resolves it with the channel of the message's own burst, in its own tenant.

ALTER TABLE messages ADD COLUMN media_handle jsonb;

UPDATE messages SET media_handle = jsonb_build_object('kind', 'telegram_file',
           'file_id', substring(url FROM '^telegram-file:[0-9a-f]{32}:(.+)$')), url = NULL
WHERE url ~ '^telegram-file:[0-9a-f]{32}:.+$';
UPDATE messages SET media_handle = jsonb_build_object('kind', 'meta_media',
           'media_id', substring(url FROM '^meta-media:[0-9a-f]{32}:(.+)$')), url = NULL
WHERE url ~ '^meta-media:[0-9a-f]{32}:.+$';
UPDATE messages SET media_handle = jsonb_build_object('kind', 'evolution_message',
           'key_id', substring(url FROM '^evolution-media:[0-9a-f]{32}:(.+)$')), url = NULL
WHERE url ~ '^evolution-media:[0-9a-f]{32}:.+$';
UPDATE messages SET media_handle = jsonb_build_object('kind', 'mail_attachment',
           'id', substring(url FROM '^leadflow-attachment:(.+)$')), url = NULL
WHERE url ~ '^leadflow-attachment:[0-9a-f-]{36}$';

-- A webhook call's raw payload is stored once, whatever number of messages and
-- statuses it carries (a 1,000-item Meta batch wrote its whole body 1,000 times);
-- each event points at it. Events stored before keep their own copy.
CREATE TABLE webhook_payloads (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    channel_id uuid NOT NULL REFERENCES channels (id),
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE inbound_events
    ADD COLUMN payload_id uuid REFERENCES webhook_payloads (id),
    ALTER COLUMN payload DROP NOT NULL,
    ADD CONSTRAINT inbound_events_payload_present CHECK (payload IS NOT NULL OR payload_id IS NOT NULL);
CREATE INDEX inbound_events_payload_idx ON inbound_events (payload_id) WHERE payload_id IS NOT NULL;

-- A mail whose sender could not be authenticated (no DMARC or DKIM pass for its domain)
-- is its own conversation: its address is kept as an unverified identity, never linked
-- to the lead the address already belongs to.
ALTER TABLE lead_identities DROP CONSTRAINT lead_identities_kind_check;
ALTER TABLE lead_identities ADD CONSTRAINT lead_identities_kind_check
    CHECK (kind IN ('phone', 'wa_lid', 'telegram', 'email', 'email_unverified'));

-- Webhook tokens at rest: encrypted like every other secret (bound to their channel);
-- the plaintext column empties at start as each process rebinds (see db::rebind_secrets).
ALTER TABLE channels ADD COLUMN webhook_secret_enc bytea, ALTER COLUMN webhook_secret DROP NOT NULL;

-- Google push-channel tokens at rest: encrypted and bound to their channel, like the rest.
ALTER TABLE calendar_channels ADD COLUMN token_enc bytea, ALTER COLUMN token DROP NOT NULL;
