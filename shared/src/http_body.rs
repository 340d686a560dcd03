//! Reading an answer from a server a tenant chose (a provider's send API, a status
//! endpoint, an SMS gateway, an AI base URL, Google): the body streams into a buffer that
//! refuses to grow past a cap, so an endless or huge answer fails that one call instead
//! of taking the process's memory. A `Content-Length` over the cap is refused before
//! anything is read; a lying or missing one cannot make the buffer bigger.

/// How much of a provider's JSON answer (a send result, a status) is ever read.
pub const PROVIDER_ANSWER_CAP: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("reading the answer failed: {0}")]
    Network(#[source] reqwest::Error),
}

/// The whole body of `resp`, at most `limit` bytes.
pub async fn read_capped(resp: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let initial = resp.content_length().unwrap_or(16 * 1024).min(limit) as usize;
    let mut bytes = Vec::with_capacity(initial);
    while let Some(chunk) = resp.chunk().await.map_err(|e| BodyError::Network(e.without_url()))? {
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// [`read_capped`] as text (invalid UTF-8 replaced).
pub async fn read_capped_text(resp: &mut reqwest::Response, limit: u64) -> Result<String, BodyError> {
    let bytes = read_capped(resp, limit).await?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
