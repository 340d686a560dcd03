//! Builds the chat request for a burst: the assistant's system prompt, then the lead's
//! recent history (oldest first; a human at the business speaks as the assistant), then
//! the burst as one user turn holding every message in acceptance order.

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, CreateChatCompletionRequest,
};
use leadflow_shared::db::messages::Message;
use leadflow_shared::domain::Assistant;

fn system(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
        content: ChatCompletionRequestSystemMessageContent::Text(text),
        name: None,
    })
}

fn user(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
        content: ChatCompletionRequestUserMessageContent::Text(text),
        name: None,
    })
}

fn assistant(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
        content: Some(ChatCompletionRequestAssistantMessageContent::Text(text)),
        ..Default::default()
    })
}

/// The text a stored message contributes. Media is understood by the media pipeline;
/// until then its kind, caption and URL are named so the model is not silently blind.
pub fn render(m: &Message) -> String {
    match (m.message_type.as_str(), m.url.as_deref()) {
        ("text", _) | (_, None) => m.content.clone(),
        (kind, Some(url)) if m.content.is_empty() => format!("[{kind}: {url}]"),
        (kind, Some(url)) => format!("[{kind}: {url}] {}", m.content),
    }
}

pub fn build(a: &Assistant, history: &[Message], burst: &[Message], lead_hash: String) -> CreateChatCompletionRequest {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if !a.settings.system_prompt.is_empty() {
        messages.push(system(a.settings.system_prompt.clone()));
    }
    for m in history {
        let text = render(m);
        messages.push(match m.role.as_str() {
            "user" => user(text),
            "system" => system(text),
            // `assistant` replies and `human` turns are both the business speaking.
            _ => assistant(text),
        });
    }
    let turn = burst.iter().map(render).collect::<Vec<_>>().join("\n");
    messages.push(user(turn));
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
