//! Domain vocabulary shared by every role: who speaks in a conversation, what kind of
//! message it is, and the settings of an assistant. Stored as text in PostgreSQL and
//! exchanged as lower-case strings on the wire.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The lead. Only user messages are answered.
    User,
    /// A reply the business already sent (recorded into history).
    Assistant,
    /// A person at the business; pauses the AI for the lead.
    Human,
    System,
}

impl Role {
    pub const ALL: &'static str = "user, assistant, human, system";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "human" => Self::Human,
            "system" => Self::System,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Human => "human",
            Self::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    Audio,
    Pdf,
}

impl MessageType {
    pub const ALL: &'static str = "text, image, audio, pdf";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "audio" => Self::Audio,
            "pdf" => Self::Pdf,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Pdf => "pdf",
        }
    }
}

/// An assistant: the prompt, model and timing that answer a tenant's leads.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Assistant {
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub settings: AssistantSettings,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What an assistant is made of; every field has a sensible default.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AssistantSettings {
    pub name: String,
    pub model: String,
    pub system_prompt: String,
    pub temperature: f64,
    pub max_tokens: i32,
    pub debounce_seconds: f64,
    pub max_wait_seconds: f64,
    pub history_limit: i32,
    pub human_pause_minutes: i32,
    pub is_default: bool,
    /// Speech-to-text model for voice notes (`/audio/transcriptions`).
    pub transcription_model: String,
    /// ISO-639-1 hint for transcription; empty: let the model detect it.
    pub transcription_language: String,
    /// Vocabulary hints for transcription (product names, places); may be empty.
    pub transcription_prompt: String,
    /// `detail` of image parts: `auto`, `low` or `high`.
    pub image_detail: String,
    /// Send images as `data:` URLs (works for expiring or authenticated provider URLs);
    /// `false` passes the original URL, cheaper when it is public and stable.
    pub image_inline: bool,
    /// Also send each PDF itself as a `file` part, for models that read PDFs.
    pub pdf_as_file: bool,
    /// Channel replies go out one paragraph per message, with a typing pause between.
    pub split_replies: bool,
}

impl Default for AssistantSettings {
    fn default() -> Self {
        Self {
            name: "Default assistant".into(),
            model: "gpt-4o-mini".into(),
            system_prompt: "You are a helpful assistant answering a business's leads. Be brief and friendly.".into(),
            temperature: 0.7,
            max_tokens: 512,
            debounce_seconds: 5.0,
            max_wait_seconds: 30.0,
            history_limit: 20,
            human_pause_minutes: 60,
            is_default: true,
            transcription_model: "whisper-1".into(),
            transcription_language: String::new(),
            transcription_prompt: String::new(),
            image_detail: "auto".into(),
            image_inline: true,
            pdf_as_file: false,
            split_replies: false,
        }
    }
}
