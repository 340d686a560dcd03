-- Google integrations: OAuth tokens per tenant and service (encrypted with the master
-- key), the consent `state`s in flight, Calendar push channels with their renewal
-- chain, each calendar's sync token, and the events synced.

CREATE TABLE integration_tokens (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    service           text NOT NULL CHECK (service IN ('google')),
    status            text NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    access_token_enc  bytea,
    refresh_token_enc bytea,
    expires_at        timestamptz,
    scopes            text NOT NULL DEFAULT '',
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One live integration per tenant and service; a revoked one stays for the record.
CREATE UNIQUE INDEX integration_tokens_live_key ON integration_tokens (tenant_id, service) WHERE status <> 'revoked';

CREATE TABLE oauth_states (
    state      text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    service    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);

CREATE TABLE calendar_channels (
    -- our channel id, echoed by Google in X-Goog-Channel-ID
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id),
    integration_id      uuid NOT NULL REFERENCES integration_tokens (id),
    calendar_id         text NOT NULL,
    -- echoed in X-Goog-Channel-Token: the shared secret of this channel
    token               text NOT NULL,
    resource_id         text,
    expiration          timestamptz,
    status              text NOT NULL CHECK (status IN ('pending', 'active', 'stopping', 'stopped', 'failed')),
    -- the channel that replaced this one (renewal), and the one this one replaced
    replaced_by         uuid REFERENCES calendar_channels (id),
    replaces            uuid REFERENCES calendar_channels (id),
    renew_attempts      integer NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz,
    last_error          text,
    last_message_number bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calendar_channels_renew_idx ON calendar_channels (expiration) WHERE status = 'active' AND replaced_by IS NULL;
CREATE INDEX calendar_channels_integration_idx ON calendar_channels (integration_id);
-- at most one successor in flight per channel
CREATE UNIQUE INDEX calendar_channels_replaces_key ON calendar_channels (replaces)
    WHERE replaces IS NOT NULL AND status IN ('pending', 'active');

CREATE TABLE calendar_syncs (
    integration_id uuid NOT NULL REFERENCES integration_tokens (id),
    calendar_id    text NOT NULL,
    sync_token     text,
    full_syncs     integer NOT NULL DEFAULT 0,
    synced_at      timestamptz,
    PRIMARY KEY (integration_id, calendar_id)
);

CREATE TABLE calendar_events (
    integration_id uuid NOT NULL REFERENCES integration_tokens (id),
    calendar_id    text NOT NULL,
    event_id       text NOT NULL,
    status         text NOT NULL,
    summary        text,
    starts_at      text,
    ends_at        text,
    updated        text,
    raw            jsonb NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, calendar_id, event_id)
);
