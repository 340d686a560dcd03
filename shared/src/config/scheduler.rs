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
        let health_check_interval = match l.get("LEADFLOW_HEALTH_CHECK_INTERVAL").map(str::trim) {
            Some("off") => None,
            _ => Some(l.duration("LEADFLOW_HEALTH_CHECK_INTERVAL")?),
        };
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
        })
    }
}
