//! What became of a message Leadflow sent through a channel: the send itself (`pending`,
//! then `sent` or `failed`) and what the provider reports afterwards, asynchronously
//! (`delivered`, `read`, or `failed` — WhatsApp's 24-hour window closed, the number is not
//! on WhatsApp…). Every provider's parser turns its own words into [`Reported`]; the
//! outbox keeps the furthest [`DeliveryState`] by [`DeliveryState::after`], which is the
//! one rule for which report wins, and the conversation API shows it.

use serde::Serialize;

/// A provider's report about one message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reported {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl Reported {
    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    pub fn state(self) -> DeliveryState {
        match self {
            Self::Sent => DeliveryState::Sent,
            Self::Delivered => DeliveryState::Delivered,
            Self::Read => DeliveryState::Read,
            Self::Failed => DeliveryState::Failed,
        }
    }
}

/// Where a sent message stands (the outbox's `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not sent yet (or a retry is scheduled).
    Pending,
    Sent,
    Failed,
    Delivered,
    Read,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }

    /// How far along a message is. Reports arrive out of order, so only a further one
    /// moves a message: a late `sent` after `delivered` changes nothing. `delivered` and
    /// `read` outrank `failed`: they prove the lead's phone got it (with several devices
    /// WhatsApp can report both), while `failed` still beats a mere `sent`.
    fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Sent => 1,
            Self::Failed => 2,
            Self::Delivered => 3,
            Self::Read => 4,
        }
    }

    /// The state after `report`, or None when the report is not news.
    pub fn after(self, report: Reported) -> Option<DeliveryState> {
        let next = report.state();
        (next.rank() > self.rank()).then_some(next)
    }

    /// The state of a message sent in parts: the least advanced part, except that a failed
    /// part fails the whole (the lead did not get all of it).
    pub fn of_parts(parts: impl IntoIterator<Item = DeliveryState>) -> Option<DeliveryState> {
        let parts: Vec<DeliveryState> = parts.into_iter().collect();
        if parts.contains(&Self::Failed) {
            return Some(Self::Failed);
        }
        parts.into_iter().min_by_key(|s| s.rank())
    }
}

/// A readable reason for a provider's failure report, for people reading the
/// conversation: the codes that need a different action are named, anything else keeps
/// the provider's own words.
pub fn reason(code: Option<&str>, provider_text: Option<&str>) -> String {
    let known = match code.unwrap_or_default() {
        // Meta Cloud (and Gupshup v3, which relays Meta's codes); 470 is the older code
        // Gupshup v2 still reports for the same thing.
        "131047" | "470" => Some("outside the 24-hour window: send a template"),
        "131026" => Some("the number cannot receive this message (not on WhatsApp, or an old app)"),
        "131049" => Some("not delivered: Meta limits marketing messages to this user for now"),
        "131056" => Some("too many messages to this number in a short time: send fewer, merged replies"),
        "131051" => Some("this message type is not supported"),
        "131053" => Some("the media could not be uploaded"),
        "131021" => Some("the recipient is the sender's own number"),
        "130472" => Some("the lead's number is part of a Meta experiment and was not messaged"),
        "132000" | "132001" | "132012" => Some("the template or its parameters do not match what Meta approved"),
        "190" => Some("the channel's access token expired or is invalid"),
        "368" => Some("the WhatsApp account is temporarily blocked for policy violations"),
        // Gupshup's own codes (v2 and v3).
        "1002" => Some("the number is not on WhatsApp"),
        "1003" => Some("the Gupshup wallet balance is too low to send"),
        "1008" | "1006" => Some("the lead has not opted in and is outside the 24-hour window: send a template"),
        "1010" | "1011" => Some("the media link or its size was refused"),
        "1012" => Some("the lead opted out of messages from this number"),
        // Twilio.
        "63016" => Some("outside the 24-hour window: send a template"),
        "30003" => Some("the phone is unreachable"),
        "30005" => Some("the number does not exist"),
        "30006" => Some("the number cannot receive this message (a landline, or the carrier refused)"),
        "30007" => Some("the carrier filtered the message"),
        _ => None,
    };
    match (known, provider_text.map(str::trim).filter(|t| !t.is_empty())) {
        (Some(k), _) => k.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "the provider reported that the message could not be delivered".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryState::*;
    use super::*;

    #[test]
    fn the_furthest_report_wins_whatever_the_order() {
        assert_eq!(Sent.after(Reported::Delivered), Some(Delivered));
        assert_eq!(Delivered.after(Reported::Sent), None);
        assert_eq!(Read.after(Reported::Delivered), None);
        assert_eq!(Sent.after(Reported::Failed), Some(Failed));
        assert_eq!(Failed.after(Reported::Read), Some(Read));
        assert_eq!(Delivered.after(Reported::Failed), None);
        assert_eq!(Failed.after(Reported::Failed), None, "a repeated failure is not news");
        assert_eq!(Pending.after(Reported::Sent), Some(Sent));
    }

    #[test]
    fn parts_show_their_weakest_and_a_failed_part_fails_the_reply() {
        assert_eq!(DeliveryState::of_parts([Read, Delivered]), Some(Delivered));
        assert_eq!(DeliveryState::of_parts([Read, Failed]), Some(Failed));
        assert_eq!(DeliveryState::of_parts([Sent, Pending]), Some(Pending));
        assert_eq!(DeliveryState::of_parts([]), None);
    }

    #[test]
    fn reasons_name_what_to_do_and_keep_the_providers_words_otherwise() {
        assert_eq!(
            reason(Some("131047"), Some("Re-engagement message")),
            "outside the 24-hour window: send a template"
        );
        assert_eq!(reason(Some("99999"), Some(" Something else ")), "Something else");
        assert!(reason(None, None).contains("could not be delivered"));
    }
}
