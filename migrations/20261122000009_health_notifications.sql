-- WhatsApp connection health, notifications and the scheduler's run log.
--
-- A channel's connection state is kept on the channel (what the API shows and what the
-- send job consults) and every change is also a row, with where it was learnt (the
-- periodic check or the provider's own connection webhook).

ALTER TABLE channels
    ADD COLUMN connection            text NOT NULL DEFAULT 'unknown'
        CHECK (connection IN ('unknown', 'connected', 'disconnected')),
    ADD COLUMN connection_changed_at timestamptz,
    ADD COLUMN connection_checked_at timestamptz,
    ADD COLUMN connection_error      text,
    -- consecutive checks that could not reach the provider's status endpoint
    ADD COLUMN check_failures        integer NOT NULL DEFAULT 0;

CREATE TABLE channel_connection_events (
    id         bigserial PRIMARY KEY,
    channel_id uuid NOT NULL REFERENCES channels (id),
    tenant_id  uuid NOT NULL,
    previous   text NOT NULL,
    status     text NOT NULL,
    source     text NOT NULL CHECK (source IN ('check', 'webhook')),
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_connection_events_channel_idx ON channel_connection_events (channel_id, created_at);

-- One row per periodic job actually run by a worker (ops see when each last ran; the
-- two-scheduler test checks one run per tick).
CREATE TABLE scheduler_runs (
    id          bigserial PRIMARY KEY,
    task        text NOT NULL,
    tick        bigint NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    detail      text
);
CREATE INDEX scheduler_runs_task_idx ON scheduler_runs (task, tick);

-- Where a tenant wants to hear about an event.
CREATE TABLE notification_configs (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    events     text[] NOT NULL,
    target     text NOT NULL CHECK (target IN ('webhook', 'email', 'whatsapp')),
    url        text,
    email      text,
    channel_id uuid REFERENCES channels (id),
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX notification_configs_tenant_idx ON notification_configs (tenant_id) WHERE deleted_at IS NULL;

-- Every event raised, delivered or not: one inside the quiet period of an earlier one
-- about the same subject is kept as suppressed.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    event      text NOT NULL,
    subject    text NOT NULL,
    payload    text NOT NULL,
    suppressed boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_quiet_idx ON notifications (tenant_id, event, subject, created_at) WHERE NOT suppressed;
CREATE INDEX notifications_tenant_idx ON notifications (tenant_id, created_at);

-- A notification goes out as a delivery like a postback: same queue, signing, retries
-- and attempt rows. A delivery belongs to a burst (postback) or to a notification and
-- one of its configs; e-mail and WhatsApp targets name a channel and a recipient.
ALTER TABLE deliveries
    ALTER COLUMN burst_id DROP NOT NULL,
    ALTER COLUMN url DROP NOT NULL,
    ADD COLUMN notification_id uuid REFERENCES notifications (id),
    ADD COLUMN config_id       uuid REFERENCES notification_configs (id),
    ADD COLUMN target          text NOT NULL DEFAULT 'postback'
        CHECK (target IN ('postback', 'webhook', 'email', 'whatsapp')),
    ADD COLUMN channel_id      uuid REFERENCES channels (id),
    ADD COLUMN recipient       text,
    ADD CONSTRAINT deliveries_notification_config_key UNIQUE (notification_id, config_id),
    ADD CONSTRAINT deliveries_one_source CHECK ((burst_id IS NULL) <> (notification_id IS NULL));
