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
DROP FUNCTION leadflow_accept(uuid, text, text, text, text, text, boolean, text, text, uuid, float8, float8, integer,
                              uuid, uuid, uuid);

CREATE FUNCTION leadflow_accept(
    p_tenant uuid, p_lead_ext text, p_role text, p_content text, p_type text, p_url text,
    p_debounce boolean, p_postback text, p_key text,
    p_assistant uuid, p_debounce_s float8, p_max_wait_s float8, p_pause_min integer,
    p_message_id uuid, p_new_lead_id uuid, p_new_burst_id uuid, p_channel uuid)
RETURNS TABLE (outcome text, message_id uuid, burst_id uuid, new_burst boolean, due_in_ms bigint,
               paused_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_lead uuid;
    v_paused timestamptz;
    v_claimed integer;
    v_existing uuid;
    v_burst uuid;
    v_due bigint;
BEGIN
    INSERT INTO leads AS l (id, tenant_id, external_id) VALUES (p_new_lead_id, p_tenant, p_lead_ext)
    ON CONFLICT (tenant_id, external_id) DO UPDATE SET external_id = EXCLUDED.external_id
    RETURNING l.id, CASE WHEN l.paused_until > now() THEN l.paused_until END INTO v_lead, v_paused;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys AS k (tenant_id, key, message_id) VALUES (p_tenant, p_key, p_message_id)
        ON CONFLICT (tenant_id, key) DO UPDATE SET message_id = EXCLUDED.message_id, created_at = now()
            WHERE k.created_at < now() - interval '24 hours';
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        IF v_claimed = 0 THEN
            SELECT k.message_id INTO v_existing FROM idempotency_keys k WHERE k.tenant_id = p_tenant AND k.key = p_key;
            RETURN QUERY SELECT 'duplicate'::text, v_existing,
                (SELECT m.burst_id FROM messages m WHERE m.id = v_existing), false, 0::bigint, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;

    IF p_role = 'human' THEN
        UPDATE leads SET paused_until = now() + make_interval(mins => p_pause_min) WHERE id = v_lead
        RETURNING leads.paused_until INTO v_paused;
    END IF;

    IF p_role <> 'user' OR v_paused IS NOT NULL THEN
        INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, status)
        VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key,
                CASE WHEN p_role = 'user' THEN 'paused' ELSE 'recorded' END);
        RETURN QUERY SELECT CASE WHEN p_role = 'user' THEN 'paused' ELSE 'recorded' END,
            p_message_id, NULL::uuid, false, 0::bigint, v_paused;
        RETURN;
    END IF;

    IF p_debounce THEN
        UPDATE bursts b SET version = b.version + 1, last_at = now(), updated_at = now(),
               due_at = LEAST(now() + make_interval(secs => p_debounce_s), b.deadline_at),
               postback_url = COALESCE(p_postback, b.postback_url)
        WHERE b.id = (SELECT x.id FROM bursts x
                      WHERE x.lead_id = v_lead AND x.assistant_id = p_assistant AND x.mode = 'debounce'
                        AND x.channel_id IS NOT DISTINCT FROM p_channel
                        AND x.status IN ('open', 'generating') AND x.deadline_at > now()
                      ORDER BY x.created_at DESC LIMIT 1
                      FOR UPDATE)
        RETURNING b.id, (EXTRACT(EPOCH FROM (b.due_at - clock_timestamp())) * 1000)::bigint INTO v_burst, v_due;
    END IF;

    IF v_burst IS NULL THEN
        v_burst := p_new_burst_id;
        INSERT INTO bursts AS b (id, tenant_id, lead_id, assistant_id, mode, postback_url, status,
                                 first_at, last_at, due_at, deadline_at, channel_id)
        VALUES (v_burst, p_tenant, v_lead, p_assistant, CASE WHEN p_debounce THEN 'debounce' ELSE 'sync' END,
                p_postback, 'open', now(), now(),
                now() + make_interval(secs => CASE WHEN p_debounce THEN p_debounce_s ELSE 0 END),
                now() + make_interval(secs => CASE WHEN p_debounce THEN GREATEST(p_max_wait_s, p_debounce_s) ELSE 0 END),
                p_channel)
        RETURNING (EXTRACT(EPOCH FROM (b.due_at - clock_timestamp())) * 1000)::bigint INTO v_due;
        INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, burst_id, status)
        VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key, v_burst, 'pending');
        RETURN QUERY SELECT 'queued'::text, p_message_id, v_burst, true, v_due, NULL::timestamptz;
        RETURN;
    END IF;

    INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, burst_id, status)
    VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key, v_burst, 'pending');
    RETURN QUERY SELECT 'queued'::text, p_message_id, v_burst, false, v_due, NULL::timestamptz;
END;
$$;
