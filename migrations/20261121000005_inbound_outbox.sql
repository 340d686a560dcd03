-- Channels, second step: inbound webhooks are stored once per provider message id and
-- processed by a worker; a lead is found by any of its identities (phone, WhatsApp LID,
-- Telegram chat); each (lead, channel) pair is a lead channel with its counters; a burst
-- that came through a channel is answered through it, via the outbox (one row per message
-- sent, with the provider's id, so our own echoes are told from a human's phone replies).

ALTER TABLE bursts ADD COLUMN channel_id uuid REFERENCES channels (id);

-- An agency can disable a client: its key stops working and the agency cannot act for it.
ALTER TABLE tenants ADD COLUMN disabled_at timestamptz;

CREATE TABLE lead_identities (
    tenant_id  uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('phone', 'wa_lid', 'telegram', 'email')),
    value      text NOT NULL,
    lead_id    uuid NOT NULL REFERENCES leads (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, value)
);
CREATE INDEX lead_identities_lead_idx ON lead_identities (lead_id);

CREATE TABLE lead_channels (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL,
    lead_id           uuid NOT NULL REFERENCES leads (id),
    channel_id        uuid NOT NULL REFERENCES channels (id),
    assistant_id      uuid REFERENCES assistants (id),
    department_id     uuid REFERENCES departments (id),
    assigned_user_id  uuid REFERENCES operators (id),
    is_primary        boolean NOT NULL DEFAULT false,
    message_count     integer NOT NULL DEFAULT 0,
    last_used_at      timestamptz,
    -- the lead's last message on this channel: official WhatsApp allows free-form replies for 24 h after it
    last_inbound_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, channel_id)
);
CREATE UNIQUE INDEX lead_channels_one_primary ON lead_channels (lead_id) WHERE is_primary;

CREATE TABLE inbound_events (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    channel_id   uuid NOT NULL REFERENCES channels (id),
    -- the provider's message id (or a status key): a webhook delivered twice is one row
    dedupe_key   text NOT NULL,
    -- which entry of a batched payload this row is about
    item         integer NOT NULL DEFAULT 0,
    -- who wrote (phone, LID or chat): one sender's messages are processed in arrival order
    sender       text,
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    UNIQUE (channel_id, dedupe_key)
);
CREATE INDEX inbound_events_pending_idx ON inbound_events (created_at) WHERE status = 'pending';
CREATE INDEX inbound_events_sender_idx ON inbound_events (channel_id, sender, created_at) WHERE status = 'pending';

CREATE TABLE outbox (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    channel_id          uuid NOT NULL REFERENCES channels (id),
    lead_id             uuid NOT NULL REFERENCES leads (id),
    -- an AI reply: one per burst whatever the queue re-runs
    burst_id            uuid UNIQUE REFERENCES bursts (id),
    operator_id         uuid REFERENCES operators (id),
    content             text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    -- set when an approved template went out instead of the text (outside the 24-hour window)
    template            text,
    attempts            integer NOT NULL DEFAULT 0,
    provider_message_id text,
    error               text,
    next_attempt_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz
);
CREATE INDEX outbox_provider_idx ON outbox (channel_id, provider_message_id);
CREATE INDEX outbox_lead_idx ON outbox (lead_id, created_at);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE outbox_attempts (
    id           bigserial PRIMARY KEY,
    outbox_id    uuid NOT NULL REFERENCES outbox (id),
    attempt      integer NOT NULL,
    status_code  integer,
    duration_ms  integer NOT NULL,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_attempts_outbox_idx ON outbox_attempts (outbox_id, attempt);

-- The accept function learns which channel a message came through: a channel's messages
-- only join that channel's burst, and the burst remembers where to answer.
DROP FUNCTION IF EXISTS leadflow_accept(uuid, text, text, text, text, text, boolean, text, text, uuid, float8, float8, integer,
                              uuid, uuid, uuid);

-- (The function this migration defined is no longer written out here: its one live
-- definition is migrations/functions/leadflow_accept.sql, applied after the migrations
-- at every start. See shared/src/db/functions.rs.)
