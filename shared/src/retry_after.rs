//! How long a server asks us to wait before trying again: `Retry-After` in either of the
//! forms RFC 9110 §10.2.3 allows (delta-seconds, or an HTTP-date), and OpenAI's
//! `retry-after-ms`. The one reader for the AI, postback and channel-send paths, so a
//! provider answering with a date is honoured everywhere, not read as "no hint".

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The wait a response asks for, if it says.
pub fn from_headers(headers: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return finite(ms / 1000.0);
    }
    parse(get("retry-after")?, SystemTime::now())
}

/// One `Retry-After` value as of `now`: a date in the past is "now" (zero).
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return finite(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn finite(secs: f64) -> Option<Duration> {
    (secs.is_finite()).then(|| Duration::from_secs_f64(secs.clamp(0.0, 1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seconds_dates_and_milliseconds() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 1.5 ", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse("Wed, 21 Oct 2026 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(parse("-5", now), Some(Duration::ZERO));
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("NaN", now), None);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(from_headers(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(
            from_headers(&h),
            Some(Duration::from_millis(250)),
            "the finer hint wins"
        );
        assert_eq!(from_headers(&HeaderMap::new()), None);
    }
}
