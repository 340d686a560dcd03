//! Speech to text through the OpenAI-compatible `/audio/transcriptions` endpoint
//! (multipart). The provider picks the decoder from the file name's extension, so the
//! caller passes a name whose extension matches the sniffed container. Errors are
//! classified exactly like chat errors: 429/5xx retry, other 4xx fail at once.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{exchange, AiClient, AiError};

/// What to transcribe and how.
pub struct Transcription<'a> {
    pub bytes: Vec<u8>,
    /// `audio.ogg`, `audio.mp3`…: the extension must be the real format.
    pub file_name: String,
    pub mime: &'a str,
    pub model: &'a str,
    /// ISO-639-1; empty lets the model detect the language.
    pub language: &'a str,
    /// Vocabulary hints; may be empty.
    pub prompt: &'a str,
}

#[derive(Deserialize)]
struct TranscriptionBody {
    text: String,
}

impl AiClient {
    #[tracing::instrument(skip_all, fields(model = %t.model, file = %t.file_name, bytes = t.bytes.len()))]
    pub async fn transcribe(
        &self,
        base_url: &str,
        api_key: Option<&SecretString>,
        t: Transcription<'_>,
    ) -> Result<String, AiError> {
        let url = format!("{}/audio/transcriptions", base_url.trim_end_matches('/'));
        let file = reqwest::multipart::Part::bytes(t.bytes)
            .file_name(t.file_name)
            .mime_str(t.mime)
            .map_err(|e| AiError::Fatal {
                status: 0,
                code: Some("media_bad_type".into()),
                message: e.to_string(),
            })?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", t.model.to_string())
            .text("response_format", "json");
        if !t.language.is_empty() {
            form = form.text("language", t.language.to_string());
        }
        if !t.prompt.is_empty() {
            form = form.text("prompt", t.prompt.to_string());
        }
        let mut req = self.http.post(url).multipart(form);
        if let Some(key) = api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let (status, bytes) = exchange(req).await?;
        let body: TranscriptionBody = serde_json::from_slice(&bytes).map_err(|e| AiError::Fatal {
            status: status.as_u16(),
            code: Some("ai_bad_response".into()),
            message: format!("the provider's response is not a transcription: {e}"),
        })?;
        Ok(body.text.trim().to_string())
    }
}
