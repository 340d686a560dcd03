-- The accept path of /ai/process and of every provider webhook, in one round trip. The
-- steps and their order are the ones documented in shared/src/db/leads.rs: lock the lead
-- row (by upserting it), claim the idempotency key, apply a human's pause (per channel,
-- or on the whole lead through /ai/process), then record the message and place it in its
-- burst (leadflow_burst_joins.sql says which). One function call instead of ~7
-- statements is what keeps ingest fast.
--
-- This file is the live definition: `db::functions` applies it after the migrations at
-- every start, and a test checks that the database runs exactly this text.
CREATE OR REPLACE FUNCTION leadflow_accept(
    p_tenant uuid, p_lead_ext text, p_role text, p_content text, p_type text, p_url text,
    p_debounce boolean, p_postback text, p_key text,
    p_assistant uuid, p_debounce_s float8, p_max_wait_s float8, p_pause_min integer,
    p_message_id uuid, p_new_lead_id uuid, p_new_burst_id uuid, p_channel uuid,
    p_request_id text DEFAULT NULL)
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
    IF p_channel IS NOT NULL THEN
        v_paused := GREATEST(v_paused, (SELECT cp.paused_until FROM channel_pauses cp
                                        WHERE cp.lead_id = v_lead AND cp.channel_id = p_channel
                                          AND cp.paused_until > now()));
    END IF;

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

    IF p_role = 'human' AND p_channel IS NULL THEN
        UPDATE leads SET paused_until = now() + make_interval(mins => p_pause_min) WHERE id = v_lead
        RETURNING leads.paused_until INTO v_paused;
    ELSIF p_role = 'human' THEN
        -- A human on one channel pauses the AI on that channel only.
        INSERT INTO channel_pauses AS cp (lead_id, channel_id, paused_until)
        VALUES (v_lead, p_channel, now() + make_interval(mins => p_pause_min))
        ON CONFLICT (lead_id, channel_id) DO UPDATE SET paused_until = EXCLUDED.paused_until
        RETURNING GREATEST(v_paused, cp.paused_until) INTO v_paused;
    END IF;

    IF p_role <> 'user' OR v_paused IS NOT NULL THEN
        INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, status, request_id)
        VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key,
                CASE WHEN p_role = 'user' THEN 'paused' ELSE 'recorded' END, p_request_id);
        RETURN QUERY SELECT CASE WHEN p_role = 'user' THEN 'paused' ELSE 'recorded' END,
            p_message_id, NULL::uuid, false, 0::bigint, v_paused;
        RETURN;
    END IF;

    IF p_debounce THEN
        UPDATE bursts b SET version = b.version + 1, last_at = now(), updated_at = now(),
               due_at = LEAST(now() + make_interval(secs => p_debounce_s), b.deadline_at),
               postback_url = COALESCE(p_postback, b.postback_url)
        WHERE b.id = (SELECT x.id FROM bursts x
                      WHERE leadflow_burst_joins(x, v_lead, p_assistant, p_channel) AND x.deadline_at > now()
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
        INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, burst_id, status, request_id)
        VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key, v_burst, 'pending', p_request_id);
        RETURN QUERY SELECT 'queued'::text, p_message_id, v_burst, true, v_due, NULL::timestamptz;
        RETURN;
    END IF;

    INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, burst_id, status, request_id)
    VALUES (p_message_id, p_tenant, v_lead, p_role, p_content, p_type, p_url, p_key, v_burst, 'pending', p_request_id);
    RETURN QUERY SELECT 'queued'::text, p_message_id, v_burst, false, v_due, NULL::timestamptz;
END;
$$;
