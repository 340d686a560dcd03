//! Builds the chat request for a burst: the assistant's system prompt, then the lead's
//! recent history (oldest first; a human at the business speaks as the assistant), then
//! the burst as one user turn holding every message in acceptance order.
//!
//! Media arrive already understood (see `crate::media`): a voice note as its transcript,
//! a PDF as its extracted text, both marked so the model knows what it is reading; an
//! image as an `image_url` part right after its marker; a medium that could not be
//! understood as a short note, so the reply can ask the lead to send it again. History
//! carries transcripts and PDF text too, but not images again (tokens). With the
//! assistant's `pdf_as_file`, a PDF goes as a `file` part after its marker instead of
//! its extracted text.

use std::collections::HashMap;

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestMessageContentPartFile, ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestMessageContentPartText, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart, CreateChatCompletionRequest,
    FileObject, ImageDetail, ImageUrl,
};
use base64::Engine;
use leadflow_shared::db::media::{Media, MediaStatus};
use leadflow_shared::db::messages::Message;
use leadflow_shared::domain::Assistant;
use uuid::Uuid;

/// Media results by message id.
pub type MediaMap = HashMap<Uuid, Media>;

fn system(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
        content: ChatCompletionRequestSystemMessageContent::Text(text),
        name: None,
    })
}

fn user(content: ChatCompletionRequestUserMessageContent) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage { content, name: None })
}

fn assistant(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
        content: Some(ChatCompletionRequestAssistantMessageContent::Text(text)),
        ..Default::default()
    })
}

fn with_caption(head: String, caption: &str) -> String {
    match caption.trim() {
        "" => format!("[{head}]"),
        c => format!("[{head}; caption: \"{c}\"]"),
    }
}

/// Why a medium is missing, in words the model can pass on to the lead.
fn reason(m: Option<&Media>) -> &'static str {
    let code = m.and_then(|m| m.error_code.as_deref()).unwrap_or("");
    match code {
        "" => "it was not ready in time",
        "media_too_large" => "the file is too large",
        "media_wrong_type" => "the file is not in a supported format",
        "media_url_refused" => "the link is not allowed",
        "media_download_failed" | "media_unreachable" => "the file could not be downloaded",
        "pdf_unreadable" => "the file is damaged or not a PDF",
        "pdf_encrypted" => "the PDF is password-protected",
        c if c.starts_with("transcription_") => "the transcription service failed",
        _ => "it could not be processed",
    }
}

fn pdf_head(x: &Media) -> String {
    let name = x.file_name.as_deref().unwrap_or("document.pdf");
    let pages = x.pages.unwrap_or(0);
    let plural = if pages == 1 { "page" } else { "pages" };
    let mut head = format!("PDF \"{name}\", {pages} {plural}");
    if x.no_text {
        head.push_str(": PDF without extractable text");
    } else if x.truncated {
        head.push_str(&format!(", text truncated (read {} pages)", x.pages_read.unwrap_or(0)));
    }
    head
}

/// The text a stored message contributes. `media` is its result, when it has one;
/// `in_burst` says whether a missing result is news (a note) or old (named by URL).
pub fn render(m: &Message, media: Option<&Media>, in_burst: bool) -> String {
    let caption = m.content.as_str();
    let done = media.filter(|x| x.status == MediaStatus::Done);
    match (m.message_type.as_str(), done) {
        ("text", _) => m.content.clone(),
        ("audio", Some(x)) => format!(
            "{} {}",
            with_caption("voice note".into(), caption),
            x.text.as_deref().unwrap_or("")
        ),
        ("pdf", Some(x)) if x.no_text => with_caption(pdf_head(x), caption),
        ("pdf", Some(x)) => format!(
            "{}\n{}",
            with_caption(pdf_head(x), caption),
            x.text.as_deref().unwrap_or("")
        ),
        ("image", Some(_)) => with_caption("image".into(), caption),
        (kind, None) if !in_burst && media.is_none() => match (m.url.as_deref(), caption.is_empty()) {
            (Some(url), true) => format!("[{kind}: {url}]"),
            (Some(url), false) => format!("[{kind}: {url}] {caption}"),
            (None, _) => m.content.clone(),
        },
        (kind, _) => {
            let what = match kind {
                "audio" => "voice note could not be transcribed".to_string(),
                "pdf" => match media.and_then(|x| x.file_name.as_deref()) {
                    Some(name) => format!("PDF \"{name}\" could not be read"),
                    None => "PDF could not be read".to_string(),
                },
                _ => "image could not be loaded".to_string(),
            };
            with_caption(format!("{what}: {}", reason(media)), caption)
        }
    }
}

/// The parts of one burst's user turn, in acceptance order: text runs joined by
/// newlines, each image (and, per assistant, each PDF file) right after its marker.
fn burst_turn(a: &Assistant, burst: &[Message], media: &MediaMap) -> ChatCompletionRequestUserMessageContent {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let flush = |text: &mut Vec<String>, parts: &mut Vec<ChatCompletionRequestUserMessageContentPart>| {
        if !text.is_empty() {
            parts.push(ChatCompletionRequestUserMessageContentPart::Text(
                ChatCompletionRequestMessageContentPartText {
                    text: text.join("\n"),
                    prompt_cache_breakpoint: None,
                },
            ));
            text.clear();
        }
    };
    for m in burst {
        let x = media.get(&m.id);
        let as_file = m.message_type == "pdf" && a.settings.pdf_as_file;
        match x.filter(|x| as_file && x.status == MediaStatus::Done && x.data.is_some()) {
            // The model reads the file itself: the marker only, not the text twice.
            Some(x) => text.push(with_caption(pdf_head(x), &m.content)),
            None => text.push(render(m, x, true)),
        }
        let Some(x) = x.filter(|x| x.status == MediaStatus::Done) else {
            continue;
        };
        match m.message_type.as_str() {
            "image" => {
                let url = match (&x.data, a.settings.image_inline, m.url.as_deref()) {
                    (Some(bytes), true, _) | (Some(bytes), false, None) => data_url(x.mime.as_deref(), bytes),
                    (_, _, Some(url)) => url.to_string(),
                    (None, _, None) => continue,
                };
                flush(&mut text, &mut parts);
                parts.push(ChatCompletionRequestUserMessageContentPart::ImageUrl(
                    ChatCompletionRequestMessageContentPartImage {
                        image_url: ImageUrl {
                            url,
                            detail: Some(detail(&a.settings.image_detail)),
                        },
                        prompt_cache_breakpoint: None,
                    },
                ));
            }
            "pdf" if a.settings.pdf_as_file => {
                let Some(bytes) = &x.data else { continue };
                flush(&mut text, &mut parts);
                parts.push(ChatCompletionRequestUserMessageContentPart::File(
                    ChatCompletionRequestMessageContentPartFile {
                        file: FileObject {
                            file_data: Some(data_url(Some("application/pdf"), bytes)),
                            file_id: None,
                            filename: Some(x.file_name.clone().unwrap_or_else(|| "document.pdf".into())),
                        },
                        prompt_cache_breakpoint: None,
                    },
                ));
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return ChatCompletionRequestUserMessageContent::Text(text.join("\n"));
    }
    flush(&mut text, &mut parts);
    ChatCompletionRequestUserMessageContent::Array(parts)
}

fn data_url(mime: Option<&str>, bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("data:{};base64,{b64}", mime.unwrap_or("application/octet-stream"))
}

fn detail(s: &str) -> ImageDetail {
    match s {
        "low" => ImageDetail::Low,
        "high" => ImageDetail::High,
        _ => ImageDetail::Auto,
    }
}

pub fn build(
    a: &Assistant,
    history: &[Message],
    burst: &[Message],
    media: &MediaMap,
    lead_hash: String,
) -> CreateChatCompletionRequest {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if !a.settings.system_prompt.is_empty() {
        messages.push(system(a.settings.system_prompt.clone()));
    }
    for m in history {
        let text = render(m, media.get(&m.id), false);
        messages.push(match m.role.as_str() {
            "user" => user(ChatCompletionRequestUserMessageContent::Text(text)),
            "system" => system(text),
            // `assistant` replies and `human` turns are both the business speaking.
            _ => assistant(text),
        });
    }
    messages.push(user(burst_turn(a, burst, media)));
    #[allow(deprecated)]
    CreateChatCompletionRequest {
        model: a.settings.model.clone(),
        messages,
        temperature: Some(a.settings.temperature as f32),
        max_tokens: Some(a.settings.max_tokens.max(1) as u32),
        user: Some(lead_hash),
        ..Default::default()
    }
}
