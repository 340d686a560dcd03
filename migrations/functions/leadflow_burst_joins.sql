-- Which burst a lead's message may join: one of the same lead, assistant and channel
-- (NULL for /ai/process, which has none), debounced and not answered yet. The one home of
-- that rule, used by both paths that put messages into a burst: accepting a message
-- (leadflow_accept) and moving the messages that arrived during a generation past its
-- deadline into the lead's next burst (bursts::split_off_after). A plain SQL function, so
-- PostgreSQL inlines it and the bursts indexes still apply.
CREATE OR REPLACE FUNCTION leadflow_burst_joins(x bursts, p_lead uuid, p_assistant uuid, p_channel uuid)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT x.lead_id = p_lead AND x.assistant_id = p_assistant AND x.mode = 'debounce'
       AND x.channel_id IS NOT DISTINCT FROM p_channel AND x.status IN ('open', 'generating')
$$;
