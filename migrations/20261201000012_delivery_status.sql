-- What providers report about the messages Leadflow sent reaches the conversation.
--
-- The outbox row of a sent message moves on to `delivered` / `read`, or to `failed` when the
-- provider reports it undeliverable (WhatsApp's 24-hour window closed…), with the
-- provider's code. Which report wins is decided in Rust (`delivery::DeliveryState::after`);
-- every change and every report is kept as a row (a report applied or not), so the
-- conversation API can show a message's history and nothing a provider said is lost.

ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'sent', 'failed', 'delivered', 'read'));
-- The conversation message this row sends: the AI reply (every part of it) or the
-- operator's message.
ALTER TABLE outbox ADD COLUMN message_id uuid REFERENCES messages (id) ON DELETE SET NULL;
ALTER TABLE outbox ADD COLUMN error_code text;
-- When it reached its current status.
ALTER TABLE outbox ADD COLUMN status_at timestamptz;
UPDATE outbox o SET message_id = m.id FROM messages m WHERE m.reply_to_burst = o.burst_id;
UPDATE outbox SET status_at = coalesce(sent_at, created_at) WHERE status <> 'pending';
CREATE INDEX outbox_message_idx ON outbox (message_id) WHERE message_id IS NOT NULL;

CREATE TABLE outbox_status_events (
    id          bigserial PRIMARY KEY,
    outbox_id   uuid NOT NULL REFERENCES outbox (id),
    -- `send`: our own send call's outcome; `provider`: a report the provider sent later
    source      text NOT NULL CHECK (source IN ('send', 'provider')),
    status      text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
    error_code  text,
    error       text,
    -- false: it was not news (a late `sent` after `delivered`, a repeated failure)
    applied     boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_status_events_outbox_idx ON outbox_status_events (outbox_id, id);
INSERT INTO outbox_status_events (outbox_id, source, status, error, applied, created_at)
SELECT id, 'send', status, error, true, coalesce(sent_at, created_at) FROM outbox WHERE status IN ('sent', 'failed');
