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
CREATE INDEX scheduler_runs_started_idx ON scheduler_runs (started_at);

-- Housekeeping deletes old attempt rows by age.
CREATE INDEX delivery_attempts_created_idx ON delivery_attempts (created_at);
CREATE INDEX outbox_attempts_created_idx ON outbox_attempts (created_at);

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

-- Every event raised. One inside the quiet period of an earlier delivered one of the same
-- event about the same subject is `held` to the end of that period, then `released` if it
-- is still the latest news about its subject and says something new, else `dropped`: a
-- flapping connection sends one message per period, and the last one sent is the truth.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    event      text NOT NULL,
    subject    text NOT NULL,
    payload    text NOT NULL,
    status     text NOT NULL CHECK (status IN ('sent', 'held', 'released', 'dropped')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_subject_idx ON notifications (tenant_id, subject, created_at);
CREATE INDEX notifications_tenant_idx ON notifications (tenant_id, created_at);

-- A notification goes out as a delivery like a postback: same queue, signing, retries
-- and attempt rows. A delivery belongs to a burst (postback) or to a notification and
-- one of its configs; e-mail and WhatsApp targets name a channel and a recipient.
-- `deliveries` may be big: the new columns need no rewrite (constant default) and the
-- constraints are added NOT VALID, so the table is not scanned under the lock; rows
-- written from now on are checked.
ALTER TABLE deliveries
    ALTER COLUMN burst_id DROP NOT NULL,
    ALTER COLUMN url DROP NOT NULL,
    ADD COLUMN notification_id uuid,
    ADD COLUMN config_id       uuid,
    ADD COLUMN target          text NOT NULL DEFAULT 'postback',
    ADD COLUMN channel_id      uuid,
    ADD COLUMN recipient       text,
    ADD CONSTRAINT deliveries_notification_fk FOREIGN KEY (notification_id) REFERENCES notifications (id) NOT VALID,
    ADD CONSTRAINT deliveries_config_fk FOREIGN KEY (config_id) REFERENCES notification_configs (id) NOT VALID,
    ADD CONSTRAINT deliveries_channel_fk FOREIGN KEY (channel_id) REFERENCES channels (id) NOT VALID,
    ADD CONSTRAINT deliveries_target_check CHECK (target IN ('postback', 'webhook', 'email', 'whatsapp')) NOT VALID,
    ADD CONSTRAINT deliveries_one_source CHECK ((burst_id IS NULL) <> (notification_id IS NULL)) NOT VALID;
-- Only notification deliveries have these; postbacks (NULLs) are not indexed.
CREATE UNIQUE INDEX deliveries_notification_config_key ON deliveries (notification_id, config_id)
    WHERE notification_id IS NOT NULL;
