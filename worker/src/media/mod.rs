//! Media understanding: a lead's image, voice note or PDF becomes something the chat
//! model can use — an image part, a transcript, extracted text. Runs on the `media`
//! queue from the moment the message is accepted (see `jobs::media`), so the work
//! overlaps the debounce window instead of adding to the reply's latency.
//!
//! Every failure is a [`MediaError`] with a short code and a reason fit for the prompt
//! note ("the file is larger than …"): a bad medium never fails the burst.

pub mod pdf;
pub mod resolve;
pub mod sniff;

use std::time::{Duration, Instant};

use leadflow_shared::db::media::{Claim, Outcome};
use leadflow_shared::db::tenants;
use leadflow_shared::domain::AssistantSettings;
use leadflow_shared::inbound::MediaKind;

use crate::ai::transcribe::Transcription;
use crate::ai::AiError;
use crate::Ctx;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MediaError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    /// The provider's hint for the next try, when it gave one.
    pub retry_after: Option<Duration>,
}

impl MediaError {
    fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<leadflow_providers::DownloadError> for MediaError {
    fn from(e: leadflow_providers::DownloadError) -> Self {
        Self {
            code: e.code().into(),
            retryable: e.retryable(),
            message: e.to_string(),
            retry_after: None,
        }
    }
}

impl From<AiError> for MediaError {
    fn from(e: AiError) -> Self {
        let (retryable, retry_after) = match &e {
            AiError::Retryable { retry_after, .. } => (true, *retry_after),
            _ => (false, None),
        };
        Self {
            code: format!("transcription_{}", e.code()),
            message: format!("transcription failed: {e}"),
            retryable,
            retry_after,
        }
    }
}

/// Downloads and understands one claimed medium.
pub async fn process(ctx: &Ctx, claim: &Claim, settings: &AssistantSettings) -> Result<Outcome, MediaError> {
    let started = Instant::now();
    let limits = &ctx.cfg.media;
    let limit = limits.max_bytes(match claim.kind.as_str() {
        "audio" => MediaKind::Audio,
        "pdf" => MediaKind::Pdf,
        _ => MediaKind::Image,
    });
    let file = resolve::fetch(ctx, claim, limit).await?;
    let sniffed = match claim.kind.as_str() {
        "audio" => sniff::audio(&file.bytes),
        "pdf" => sniff::pdf(&file.bytes),
        _ => sniff::image(&file.bytes),
    };
    let Some(format) = sniffed else {
        let declared = file.content_type.as_deref().unwrap_or("none");
        return Err(MediaError::fatal(
            "media_wrong_type",
            format!(
                "expected {}, got {} (declared content type: {declared})",
                expected(&claim.kind),
                sniff::describe(&file.bytes)
            ),
        ));
    };
    let mut out = Outcome {
        mime: Some(format.mime.to_string()),
        file_name: file.file_name.clone(),
        size_bytes: Some(file.bytes.len() as i64),
        ..Default::default()
    };
    match claim.kind.as_str() {
        "audio" => {
            let tenant_ai = tenants::ai_settings(&ctx.pool, &ctx.master_key, claim.tenant_id)
                .await
                .map_err(|e| MediaError {
                    code: "internal".into(),
                    message: e.to_string(),
                    retryable: true,
                    retry_after: None,
                })?;
            let route = crate::ai::AiRoute::for_tenant(&ctx.cfg, &tenant_ai)?;
            let started = std::time::Instant::now();
            let text = ctx
                .ai
                .transcribe(
                    route.base_url,
                    route.key,
                    Transcription {
                        bytes: file.bytes,
                        file_name: format!("audio.{}", format.ext),
                        mime: format.mime,
                        model: &settings.transcription_model,
                        language: &settings.transcription_language,
                        prompt: &settings.transcription_prompt,
                    },
                )
                .await;
            leadflow_shared::metrics::transcription(started.elapsed());
            out.text = Some(text?);
        }
        "pdf" => {
            let extracted = {
                let _cpu = ctx.cpu.acquire().await.expect("the CPU semaphore is never closed");
                let started = std::time::Instant::now();
                let extracted = pdf::extract(&ctx.pdf, &file.bytes, limits.pdf_max_pages, limits.pdf_max_chars).await;
                leadflow_shared::metrics::pdf_extraction(started.elapsed());
                extracted.map_err(|e| match e {
                    pdf::PdfError::Encrypted => MediaError::fatal("pdf_encrypted", e.to_string()),
                    pdf::PdfError::Corrupt(_) | pdf::PdfError::Unreadable(_) => {
                        MediaError::fatal("pdf_unreadable", e.to_string())
                    }
                })?
            };
            out.no_text = extracted.no_text();
            out.pages = Some(extracted.pages as i32);
            out.pages_read = Some(extracted.pages_read as i32);
            out.truncated = extracted.truncated;
            out.text = Some(extracted.text);
            if settings.pdf_as_file {
                out.data = Some(file.bytes);
            }
        }
        _ => {
            if settings.image_inline {
                out.data = Some(file.bytes);
            }
        }
    }
    out.duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    Ok(out)
}

fn expected(kind: &str) -> &'static str {
    match kind {
        "audio" => "an audio file (ogg, mp3, wav, m4a, mp4, webm or flac)",
        "pdf" => "a PDF",
        _ => "an image (png, jpeg, gif or webp)",
    }
}
