//! Settings of the messaging channels: the public URL providers call (Twilio signs the
//! exact URL it requested, so behind a proxy Leadflow must know it), how often e-mail
//! mailboxes are polled, how fast one channel may send (providers limit per number), and
//! the pause between the parts of a reply split on paragraph breaks.

use std::time::Duration;

use super::{invalid, ConfigError, Layers};

#[derive(Debug, Clone)]
pub struct ChannelsConfig {
    /// `https://leadflow.example.com`: the origin providers post webhooks to. Without it,
    /// the origin is rebuilt from the request's `Host` and `X-Forwarded-Proto`.
    pub public_url: Option<String>,
    /// How often each e-mail channel's IMAP mailbox is checked for new mail.
    pub mail_poll_interval: Duration,
    /// Messages per second one channel may send (a burst of the same size is allowed).
    pub send_rate: f64,
    /// The pause between parts of a split reply, so they read like typing.
    pub typing_delay: Duration,
    /// Most messages plus statuses one webhook call may carry; a bigger call is refused
    /// whole (413) before anything is stored.
    pub webhook_max_items: usize,
    /// Verified webhook calls per second per channel, across API processes (`0`: unlimited).
    pub webhook_rate_limit: u32,
    /// New leads one e-mail channel may take per hour (anyone can write to an address:
    /// this bounds what a flood of made-up senders costs). `0`: no limit.
    pub mail_new_leads_per_hour: u32,
}

impl ChannelsConfig {
    pub(super) fn parse(l: &Layers) -> Result<Self, ConfigError> {
        let public_url = match l.get("LEADFLOW_PUBLIC_URL") {
            None => None,
            Some(u) => {
                let parsed = url::Url::parse(u).map_err(|e| invalid("LEADFLOW_PUBLIC_URL", e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(invalid("LEADFLOW_PUBLIC_URL", "must be an http(s) origin"));
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };
        let send_rate: f64 = l
            .req("LEADFLOW_CHANNEL_SEND_RATE")?
            .trim()
            .parse()
            .map_err(|_| invalid("LEADFLOW_CHANNEL_SEND_RATE", "must be a number of messages per second"))?;
        if !(send_rate > 0.0 && send_rate.is_finite()) {
            return Err(invalid("LEADFLOW_CHANNEL_SEND_RATE", "must be above 0"));
        }
        Ok(Self {
            public_url,
            mail_poll_interval: l.duration("LEADFLOW_MAIL_POLL_INTERVAL")?,
            send_rate,
            typing_delay: l.duration("LEADFLOW_TYPING_DELAY")?,
            webhook_max_items: match l.number("LEADFLOW_WEBHOOK_MAX_ITEMS")? {
                0 => return Err(invalid("LEADFLOW_WEBHOOK_MAX_ITEMS", "must be at least 1")),
                n => n,
            },
            mail_new_leads_per_hour: l.number("LEADFLOW_MAIL_NEW_LEADS_PER_HOUR")?,
            webhook_rate_limit: l.number("LEADFLOW_WEBHOOK_RATE_LIMIT")?,
        })
    }
}
