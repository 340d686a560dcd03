//! Settings of the periodic work: how often WhatsApp connections are checked and how many
//! checks run at once, when an unreachable status endpoint counts as a disconnection, how
//! long a disconnected channel's messages wait before failing, and the quiet period that
//! keeps a flapping connection from spamming notifications, and how long finished work is
//! kept.

use std::time::Duration;

use super::{invalid, ConfigError, Layers};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often every active WhatsApp channel's connection is checked; `None` (`off`):
    /// never, only the providers' own connection webhooks are applied.
    pub health_check_interval: Option<Duration>,
    /// Checks in flight at once (1,000 channels at 50 take seconds).
    pub health_check_concurrency: usize,
    /// Consecutive checks that cannot reach the provider before the channel counts as
    /// disconnected (one network blip is not a disconnection).
    pub health_failures_to_disconnect: i32,
    /// How long outbound messages of a disconnected channel wait for it to come back
    /// before they fail.
    pub disconnected_send_wait: Duration,
    /// A second notification of the same event about the same subject within this
    /// period is recorded but not delivered.
    pub notification_quiet_period: Duration,
    /// How often finished jobs and old attempt rows are cleaned.
    pub housekeeping_interval: Duration,
    /// Delivery and send attempt rows (and scheduler runs) older than this are deleted.
    pub retention_attempts: Duration,
    /// Finished (completed or failed) queue entries older than this are removed from Redis.
    pub retention_jobs: Duration,
    /// How long personal data is kept (see [`Retention`]).
    pub retention: Retention,
}

/// How long each kind of personal data is kept; `None` is `off` (kept until the lead is
/// erased). Housekeeping deletes what is older, in small batches.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Messages (with their media) older than this are deleted.
    pub messages: Option<Duration>,
    /// Inline bytes of images and PDFs (and stored e-mail attachments) are dropped after
    /// this; the text extracted from them stays.
    pub media_bytes: Option<Duration>,
    /// Raw provider payloads (and their dedupe keys) of processed webhook calls.
    pub raw_payloads: Option<Duration>,
    /// `message_id` / `Idempotency-Key` records; at least the 24 h repeats are recognised in.
    pub idempotency_keys: Duration,
    /// Bodies of delivered postbacks and of finished channel sends (the rows stay).
    pub delivery_bodies: Option<Duration>,
}

impl Retention {
    fn parse(l: &Layers) -> Result<Self, ConfigError> {
        // Shorter than an hour would race live work (a burst waiting out its max wait, a
        // postback's retries); no real policy is that short.
        let at_least_an_hour = |var: &'static str, d: Option<Duration>| match d {
            Some(d) if d < Duration::from_secs(3600) => Err(invalid(var, "must be at least 1h, or off")),
            _ => Ok(d),
        };
        let idempotency_keys = l.duration("LEADFLOW_RETENTION_IDEMPOTENCY_KEYS")?;
        if idempotency_keys < Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "LEADFLOW_RETENTION_IDEMPOTENCY_KEYS",
                "must be at least 24h: a message_id repeated within 24 h is recognised as the same message",
            ));
        }
        Ok(Self {
            messages: at_least_an_hour(
                "LEADFLOW_RETENTION_MESSAGES",
                l.duration_or_off("LEADFLOW_RETENTION_MESSAGES")?,
            )?,
            media_bytes: at_least_an_hour(
                "LEADFLOW_RETENTION_MEDIA_BYTES",
                l.duration_or_off("LEADFLOW_RETENTION_MEDIA_BYTES")?,
            )?,
            raw_payloads: at_least_an_hour(
                "LEADFLOW_RETENTION_RAW_PAYLOADS",
                l.duration_or_off("LEADFLOW_RETENTION_RAW_PAYLOADS")?,
            )?,
            idempotency_keys,
            delivery_bodies: at_least_an_hour(
                "LEADFLOW_RETENTION_DELIVERY_BODIES",
                l.duration_or_off("LEADFLOW_RETENTION_DELIVERY_BODIES")?,
            )?,
        })
    }
}

impl SchedulerConfig {
    pub(super) fn parse(l: &Layers) -> Result<Self, ConfigError> {
        let health_check_concurrency: usize = l.number("LEADFLOW_HEALTH_CHECK_CONCURRENCY")?;
        if health_check_concurrency == 0 {
            return Err(invalid("LEADFLOW_HEALTH_CHECK_CONCURRENCY", "must be at least 1"));
        }
        let health_failures_to_disconnect: i32 = l.number("LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT")?;
        if health_failures_to_disconnect < 1 {
            return Err(invalid("LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT", "must be at least 1"));
        }
        let health_check_interval = l.duration_or_off("LEADFLOW_HEALTH_CHECK_INTERVAL")?;
        if health_check_interval.is_some_and(|i| i < Duration::from_millis(100)) {
            return Err(invalid(
                "LEADFLOW_HEALTH_CHECK_INTERVAL",
                "must be at least 100ms, or off",
            ));
        }
        Ok(Self {
            health_check_interval,
            health_check_concurrency,
            health_failures_to_disconnect,
            disconnected_send_wait: l.duration("LEADFLOW_DISCONNECTED_SEND_WAIT")?,
            notification_quiet_period: l.duration("LEADFLOW_NOTIFICATION_QUIET_PERIOD")?,
            housekeeping_interval: l.duration("LEADFLOW_HOUSEKEEPING_INTERVAL")?,
            retention_attempts: l.duration("LEADFLOW_RETENTION_ATTEMPTS")?,
            retention_jobs: l.duration("LEADFLOW_RETENTION_JOBS")?,
            retention: Retention::parse(l)?,
        })
    }
}
