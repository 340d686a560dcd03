//! Media that providers give as handles, not URLs: a Telegram `file_id` (resolved with
//! `getFile`) and a Meta media id (resolved with the Graph API and downloaded with the
//! bearer token) flow into the same media pipeline as a WhatsApp URL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, webhook};
use crate::official::{post_raw, sign};
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
    let path = crate::official::create_meta_channel(&app, &providers.base_url, json!({})).await;
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

/// What reached the AI for a lead's first burst: the user turn's text and its image parts.
fn turn(app: &TestApp) -> (String, usize) {
    let body = &app.ai.requests()[0].body;
    let images = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_array()
        .map_or(0, |parts| {
            parts.iter().filter(|p| p["type"] == json!("image_url")).count()
        });
    (last_user_turn(body), images)
}

#[tokio::test]
async fn evolution_gupshup_and_twilio_media_reach_the_pipeline() {
    use crate::support::media_server::MediaServer;
    let providers = FakeProviders::start().await;
    let files = MediaServer::start().await;
    let voice_bytes = fixture("voice.ogg").len();

    // Evolution: the webhook's URL is WhatsApp's encrypted CDN; the key id is fetched
    // through getBase64FromMediaMessage.
    providers.host_file("3A8F1C0D2B7E94A61C55", "voice.ogg");
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let ch = channel(
        &app,
        json!({"name": "Evolution", "type": "whatsapp", "provider": "evolution-api",
               "credentials": {"base_url": providers.base_url, "api_key": "B6D711FCDE4D4FD5936544120E713976",
                               "instance": "acme-vendas"}}),
    )
    .await;
    let payload: Value = serde_json::from_str(include_str!(
        "../fixtures/providers/evolution/webhook-messages-upsert-audio.json"
    ))
    .unwrap();
    webhook(&app, &ch.path, &payload, &[]).await;
    providers.wait_for(1, Duration::from_secs(20)).await;
    let (text, _) = turn(&app);
    assert_eq!(
        text,
        format!("[voice note] transcript of a {voice_bytes}-byte ogg voice note")
    );
    assert_eq!(
        providers.media_requests(),
        ["/chat/getBase64FromMediaMessage/acme-vendas"]
    );
    app.stop().await;

    // Gupshup: a download URL (here on a local file host).
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let (_, ch) = app
        .post(
            "/backend/channels",
            &json!({"name": "Gupshup", "type": "whatsapp", "provider": "gupshup",
                    "credentials": {"api_key": "sk_2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c", "app_name": "AcmeImoveis",
                                    "source": "5511912345678", "base_url": providers.base_url}}),
        )
        .await;
    let mut payload: Value =
        serde_json::from_str(include_str!("../fixtures/providers/gupshup/v2-inbound-image.json")).unwrap();
    payload["payload"]["payload"]["url"] = json!(files.put("/gs/photo", fixture("photo.jpg"), Some("image/jpeg")));
    let path = ch["webhook_path"].as_str().unwrap();
    let (status, _) = webhook(&app, path, &payload, &[]).await;
    assert_eq!(status, StatusCode::OK);
    providers.wait_for(2, Duration::from_secs(20)).await;
    let (text, images) = turn(&app);
    assert!(
        text.contains("[image; caption: \"Esse é o prédio que eu vi no site\"]"),
        "{text}"
    );
    assert_eq!(images, 1);
    app.stop().await;

    // Twilio MMS: a photo and a PDF, one message each.
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let ch = channel(
        &app,
        json!({"name": "SMS", "type": "sms", "provider": "twilio",
               "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "tw-token-0123456789",
                               "from": "+551140028922", "base_url": providers.base_url}}),
    )
    .await;
    let mut form = crate::sms::fields(include_str!("../fixtures/providers/twilio/inbound-mms.form"));
    for (k, v) in form.iter_mut() {
        match k.as_str() {
            "MediaUrl0" => *v = files.put("/tw/photo", fixture("photo.jpg"), Some("image/jpeg")),
            "MediaUrl1" => *v = files.put("/tw/doc", fixture("text.pdf"), Some("application/pdf")),
            _ => {}
        }
    }
    let path = format!("/webhooks/{}", ch.id);
    let (status, _) = crate::sms::twilio_post(&app, &path, &form, "tw-token-0123456789").await;
    assert_eq!(status, StatusCode::OK);
    providers.wait_for(3, Duration::from_secs(20)).await;
    let (text, images) = turn(&app);
    assert!(text.contains("[image; caption: \"Segue a foto da fachada\"]"), "{text}");
    assert!(
        text.contains("[PDF \"doc\", 3 pages]") && text.contains("São Paulo, ação nº 42"),
        "{text}"
    );
    assert_eq!(images, 1);
    app.stop().await;
}
