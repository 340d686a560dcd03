//! SMS channels end to end: Twilio's signed form webhooks in, its Messages API out (and
//! its status callbacks marking failures); a generic HTTP gateway the same way.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, count, webhook};
use crate::support::fake_providers::FakeProviders;
use crate::support::{eventually, last_user_turn, TestApp};

const SMS: &str = include_str!("../fixtures/providers/twilio/inbound-sms.form");
const UNDELIVERED: &str = include_str!("../fixtures/providers/twilio/status-undelivered.form");
const GATEWAY_TEXT: &str = include_str!("../fixtures/providers/http-sms/inbound-text.json");
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";

pub(crate) fn fields(form: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(form.trim().as_bytes())
        .into_owned()
        .collect()
}

fn encode(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Posts a form the way Twilio does: signed over the URL it calls and the fields.
pub(crate) async fn twilio_post(
    app: &TestApp,
    path: &str,
    fields: &[(String, String)],
    token: &str,
) -> (StatusCode, String) {
    let url = format!("{}{path}", app.base);
    let signature = leadflow_providers::twilio::signature(token, &url, fields);
    let resp = app
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(encode(fields))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn twilio_signed_sms_in_reply_out_through_the_messages_api() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "SMS", "type": "sms", "provider": "twilio",
               "credentials": {"account_sid": SID, "auth_token": TOKEN, "from": "+551140028922",
                               "base_url": providers.base_url}}),
    )
    .await;
    let path = format!("/webhooks/{}", ch.id);
    let sms = fields(SMS);

    // Signed with another token, or not signed: 401 and nothing stored.
    let (status, _) = twilio_post(&app, &path, &sms, "not-the-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&sms))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(count(&app, "SELECT count(*) FROM inbound_events").await, 0);

    let (status, body) = twilio_post(&app, &path, &sms, TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("<Response></Response>"),
        "empty TwiML, no auto-reply: {body}"
    );
    // Twilio retries a webhook it thinks failed: still one message.
    twilio_post(&app, &path, &sms, TOKEN).await;

    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    let auth = sent[0].headers["authorization"].to_str().unwrap().to_string();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(auth, format!("Basic {expected}"));
    assert_eq!(sent[0].body["To"], json!("+5511987654321"));
    assert_eq!(sent[0].body["From"], json!("+551140028922"));
    let lead_text = "Oi! Vi o anúncio do apartamento. Ainda está disponível?";
    assert_eq!(sent[0].body["Body"], json!(format!("reply to: {lead_text}")));
    assert_eq!(last_user_turn(&app.ai.requests()[0].body), lead_text);
    app.settle().await;
    assert_eq!(app.ai.request_count(), 1, "a resent webhook is one message");
    let (_, chans) = app.get("/backend/leads/+5511987654321/channels").await;
    assert_eq!(chans["data"][0]["channel_type"], json!("sms"));

    // Twilio reports the reply undelivered (30007, carrier filtering): marked failed.
    let mut report = fields(UNDELIVERED);
    for (k, v) in report.iter_mut() {
        if k == "MessageSid" || k == "SmsSid" {
            *v = sent[0].id.clone();
        }
    }
    let (status, _) = twilio_post(&app, &path, &report, TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    let error: String = eventually(
        Duration::from_secs(10),
        "the outbox message is marked failed",
        || async {
            sqlx::query_scalar::<_, String>("SELECT error FROM outbox WHERE status = 'failed'")
                .fetch_optional(&app.pool)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(error, "the carrier filtered the message");
    let code: Option<String> = sqlx::query_scalar("SELECT error_code FROM outbox WHERE status = 'failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(code.as_deref(), Some("30007"));
    app.stop().await;
}

#[tokio::test]
async fn a_generic_gateway_takes_json_in_and_out_with_its_bearer_key() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "SMS gateway", "type": "sms", "provider": "http-sms",
               "credentials": {"send_url": format!("{}/sms/send", providers.base_url),
                               "api_key": "gw-key-0123456789", "from": "LEADFLOW"}}),
    )
    .await;
    let payload: Value = serde_json::from_str(GATEWAY_TEXT).unwrap();
    let (status, _) = webhook(&app, &format!("/webhooks/{}?token=wrong", ch.id), &payload, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out) = webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, bad) = webhook(&app, &ch.path, &json!({"id": "x", "text": "sem remetente"}), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["error"]["field"], json!("body"));

    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].path, "/sms/send");
    assert_eq!(sent[0].headers["authorization"], "Bearer gw-key-0123456789");
    assert_eq!(sent[0].body["to"], json!("+5511987654321"));
    assert_eq!(sent[0].body["from"], json!("LEADFLOW"));
    assert!(sent[0].body["text"]
        .as_str()
        .unwrap()
        .starts_with("reply to: Oi! Vi o anúncio"));
    // The gateway's id is kept once the send's answer is recorded.
    let provider_id: String = eventually(Duration::from_secs(5), "the send to be recorded", || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT provider_message_id FROM outbox")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(provider_id, sent[0].id);
    app.stop().await;
}
