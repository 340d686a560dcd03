-- Channels (issue 4): the ways leads reach a business, the people who answer them, and
-- which lead talks through which channel. Provider credentials are encrypted with the
-- master key; nothing here is ever returned in full.

CREATE TABLE departments (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX departments_name_idx ON departments (tenant_id, lower(name)) WHERE deleted_at IS NULL;

-- Operators: the business's people who answer leads by hand (`/backend/users`).
CREATE TABLE operators (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    name           text NOT NULL,
    email          text,
    department_id  uuid REFERENCES departments (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX operators_email_idx ON operators (tenant_id, lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE channels (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    name             text NOT NULL,
    type             text NOT NULL CHECK (type IN ('whatsapp', 'telegram', 'email', 'sms')),
    provider         text NOT NULL,
    credentials_enc  bytea NOT NULL,
    -- proves an inbound webhook is for this channel, for providers without signatures
    webhook_secret   text NOT NULL,
    assistant_id     uuid REFERENCES assistants (id),
    department_id    uuid REFERENCES departments (id),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX channels_tenant_idx ON channels (tenant_id) WHERE deleted_at IS NULL;
