//! Downloads a lead's media URL through the SSRF-guarded client: every hop checked, the
//! body streamed into a buffer that refuses to grow past the per-kind cap (a lying or
//! missing `Content-Length` cannot make it bigger), one overall timeout.

use leadflow_shared::http_body::BodyError;
use leadflow_shared::ssrf::Policy;

use crate::http::http_error;

/// A downloaded file, whole, at most the cap in size.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// From `Content-Disposition`, else the URL's last path segment.
    pub file_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL, or a redirect, points somewhere user URLs may not go.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the file is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the media server answered HTTP {status}")]
    Status { status: u16 },
    #[error("download failed: {0}")]
    Network(String),
}

impl DownloadError {
    /// Whether another attempt may succeed (network trouble, 5xx, 408, 429).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Status { status } => *status >= 500 || matches!(status, 408 | 425 | 429),
            Self::Refused(_) | Self::TooLarge { .. } => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(_) => "media_url_refused",
            Self::TooLarge { .. } => "media_too_large",
            Self::Status { .. } => "media_download_failed",
            Self::Network(_) => "media_unreachable",
        }
    }
}

pub async fn fetch(
    client: &reqwest::Client,
    policy: &Policy,
    url: &str,
    limit: u64,
) -> Result<Downloaded, DownloadError> {
    fetch_with(client, policy, url, limit, None).await
}

/// [`fetch`], with the provider's bearer token where its media needs one (Meta).
pub async fn fetch_with(
    client: &reqwest::Client,
    policy: &Policy,
    url: &str,
    limit: u64,
    bearer: Option<&str>,
) -> Result<Downloaded, DownloadError> {
    let checked = policy
        .check_url(url)
        .await
        .map_err(|e| DownloadError::Refused(e.to_string()))?;
    let mut req = client.get(checked.clone());
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let mut resp = req.send().await.map_err(|e| {
        if e.is_redirect() {
            DownloadError::Refused(http_error(e))
        } else {
            DownloadError::Network(http_error(e))
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            status: status.as_u16(),
        });
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let file_name = header("content-disposition")
        .as_deref()
        .and_then(disposition_file_name)
        .or_else(|| {
            resp.url()
                .path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
                .filter(|s| !s.is_empty())
        })
        .map(|n| percent_decode(&n));
    let bytes = read_capped(&mut resp, limit).await?;
    Ok(Downloaded {
        bytes,
        content_type,
        file_name,
    })
}

/// The body of `resp`, refused with [`DownloadError::TooLarge`] as soon as it passes
/// `limit` bytes.
pub async fn read_capped(resp: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, DownloadError> {
    leadflow_shared::http_body::read_capped(resp, limit)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => DownloadError::TooLarge { limit },
            BodyError::Network(e) => DownloadError::Network(crate::http::error_chain(&e)),
        })
}

/// `attachment; filename="x.pdf"` (or `filename*=UTF-8''x.pdf`).
fn disposition_file_name(v: &str) -> Option<String> {
    let mut plain = None;
    for part in v.split(';').map(str::trim) {
        if let Some(rest) = part.strip_prefix("filename*=") {
            let value = rest.split("''").nth(1).unwrap_or(rest);
            return Some(value.trim_matches('"').to_string()).filter(|s| !s.is_empty());
        }
        if let Some(rest) = part.strip_prefix("filename=") {
            plain = Some(rest.trim_matches('"').to_string()).filter(|s| !s.is_empty());
        }
    }
    plain
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Names end up in prompts: keep them short and printable.
    let name: String = String::from_utf8_lossy(&out)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            disposition_file_name(r#"attachment; filename="renda.pdf""#).as_deref(),
            Some("renda.pdf")
        );
        assert_eq!(
            disposition_file_name("attachment; filename*=UTF-8''contrato%20final.pdf").as_deref(),
            Some("contrato%20final.pdf")
        );
        assert_eq!(percent_decode("contrato%20final%C3%A7.pdf"), "contrato finalç.pdf");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
