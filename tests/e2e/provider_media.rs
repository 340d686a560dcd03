//! Media that providers give as handles, not URLs: a Telegram `file_id` (resolved with
//! `getFile`) and a Meta media id (resolved with the Graph API and downloaded with the
//! bearer token) flow into the same media pipeline as a WhatsApp URL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, webhook};
use crate::official::{post_raw, sign, APP_SECRET};
use crate::support::fake_providers::FakeProviders;
use crate::support::media_server::fixture;
use crate::support::{last_user_turn, TestApp};

const TELEGRAM_VOICE: &str = include_str!("../fixtures/providers/telegram/update-voice.json");
const META_IMAGE: &str = include_str!("../fixtures/providers/meta-cloud/webhook-image.json");
const VOICE_FILE_ID: &str = "AwACAgEAAxkBAAIEoWdA2k1c7xYdq3m0Zr6J8sT3q2KpAAJxBQACg4oIRm2Yk1tW3v0fNgQ";

#[tokio::test]
async fn a_telegram_voice_note_is_fetched_by_file_id_and_transcribed() {
    let providers = FakeProviders::start().await;
    providers.host_file(VOICE_FILE_ID, "voice.ogg");
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let ch = channel(
        &app,
        json!({"name": "Telegram", "type": "telegram", "provider": "telegram-bot",
               "credentials": {"bot_token": "7123456789:AAH3kZ-example-token-Qw8", "base_url": providers.base_url}}),
    )
    .await;
    let payload: Value = serde_json::from_str(TELEGRAM_VOICE).unwrap();
    let (status, _) = webhook(
        &app,
        &format!("/webhooks/{}", ch.id),
        &payload,
        &[("X-Telegram-Bot-Api-Secret-Token", &ch.token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = providers.wait_for(1, Duration::from_secs(20)).await;
    let expected = format!(
        "[voice note] transcript of a {}-byte ogg voice note",
        fixture("voice.ogg").len()
    );
    assert_eq!(last_user_turn(&app.ai.requests()[0].body), expected);
    assert_eq!(sent[0].body["text"], json!(format!("reply to: {expected}")));
    assert_eq!(
        providers.media_requests(),
        [
            "/bot7123456789:AAH3kZ-example-token-Qw8/getFile",
            "/file/bot7123456789:AAH3kZ-example-token-Qw8/documents/voice.ogg"
        ],
        "getFile for the path, then the file"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_meta_image_is_fetched_by_media_id_with_the_bearer_token() {
    let providers = FakeProviders::start().await;
    providers.host_file("2129384756012345", "photo.jpg");
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let (status, ch) = app
        .post(
            "/backend/channels",
            &json!({"name": "WhatsApp oficial", "type": "whatsapp", "provider": "meta-cloud",
                    "credentials": {"access_token": "EAAGsystemusertoken1234567890", "phone_number_id": "158072934066266",
                                    "app_secret": APP_SECRET, "verify_token": "verify-me-please",
                                    "base_url": providers.base_url}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let path = format!("/webhooks/{}", ch["id"].as_str().unwrap());
    let body = META_IMAGE.as_bytes();
    assert_eq!(
        post_raw(&app, &path, body, &[("x-hub-signature-256", sign(body))]).await,
        StatusCode::OK
    );
    providers.wait_for(1, Duration::from_secs(20)).await;
    let request = &app.ai.requests()[0].body;
    let parts = request["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    let image = parts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == json!("image_url"))
        .unwrap_or_else(|| panic!("an image part: {parts}"));
    use base64::Engine;
    let inlined = base64::engine::general_purpose::STANDARD.encode(fixture("photo.jpg"));
    assert_eq!(
        image["image_url"]["url"],
        json!(format!("data:image/jpeg;base64,{inlined}"))
    );
    assert_eq!(
        providers.media_requests(),
        ["/v23.0/2129384756012345", "/lookaside/photo.jpg"],
        "the Graph API for the URL, then the download (both with the bearer token)"
    );
    app.stop().await;
}
