//! Webhook ingest: provider payloads posted to `/webhooks/{channel_id}` (verify, parse,
//! store once, enqueue), per provider format, next to `/ai/process` in the same run with
//! the same load generator. Only the API runs, as in the ingest section. Each format is
//! verified its provider's way: a URL token, Telegram's secret header, Meta's HMAC of the
//! body, Twilio's HMAC of the URL and form fields, all computed per request.

use std::sync::Arc;

use leadflow_providers::meta::signature as meta_signature;
use leadflow_providers::twilio;
use leadflow_shared::db::channels::{self, ChannelFields, Credentials};
use serde_json::{json, Value};

use super::load::{self, Request, Requests};
use super::sections::{warm_then_measure, Section};
use super::{Row, Scope};
use leadflow::{start, Roles};

const ZAPI: &str = include_str!("../../tests/fixtures/providers/zapi/webhook-received-text.json");
const EVOLUTION: &str =
    include_str!("../../tests/fixtures/providers/evolution/webhook-messages-upsert-conversation.json");
const GUPSHUP: &str = include_str!("../../tests/fixtures/providers/gupshup/v2-inbound-text.json");
const META: &str = include_str!("../../tests/fixtures/providers/meta-cloud/webhook-text.json");
const TELEGRAM: &str = include_str!("../../tests/fixtures/providers/telegram/update-text.json");
const TWILIO: &str = include_str!("../../tests/fixtures/providers/twilio/inbound-sms.form");
const HTTP_SMS: &str = include_str!("../../tests/fixtures/providers/http-sms/inbound-text.json");

const APP_SECRET: &str = "bench-app-secret";
const AUTH_TOKEN: &str = "bench-twilio-auth-token";

/// The formats measured: provider, channel type, credentials.
fn formats() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "z-api",
            "whatsapp",
            json!({"instance_id": "3E4F7360B552F0C2DBCB9E6774402775", "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F"}),
        ),
        (
            "evolution-api",
            "whatsapp",
            json!({"base_url": "https://evo.example.com", "api_key": "k", "instance": "acme-vendas"}),
        ),
        (
            "gupshup",
            "whatsapp",
            json!({"api_key": "k", "app_name": "AcmeImoveis", "source": "5511912345678"}),
        ),
        (
            "meta-cloud",
            "whatsapp",
            json!({"access_token": "t", "phone_number_id": "158072934066266", "app_secret": APP_SECRET, "verify_token": "v"}),
        ),
        ("telegram-bot", "telegram", json!({"bot_token": "123:abc"})),
        (
            "twilio",
            "sms",
            json!({"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": AUTH_TOKEN, "from": "+551140028922"}),
        ),
        ("http-sms", "sms", json!({"send_url": "https://sms.example.com/send"})),
    ]
}

fn phone(i: usize) -> String {
    format!("55119{:08}", i % 5000)
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Request `i` of each format: a distinct message id, 5,000 distinct senders, signed or
/// authenticated the way that provider does it. `url` is what Twilio signs.
fn requests(provider: &str, url: String, secret: String) -> Requests {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let id = move |i: usize| format!("BENCH{run}{i:010}");
    match provider {
        "z-api" => {
            let base = fixture(ZAPI);
            Arc::new(move |i| {
                let mut b = base.clone();
                b["messageId"] = json!(id(i));
                b["phone"] = json!(phone(i));
                Request::json(&b)
            })
        }
        "evolution-api" => {
            let base = fixture(EVOLUTION);
            Arc::new(move |i| {
                let mut b = base.clone();
                b["data"]["key"]["id"] = json!(id(i));
                b["data"]["key"]["remoteJid"] = json!(format!("{}@s.whatsapp.net", phone(i)));
                Request::json(&b)
            })
        }
        "gupshup" => {
            let base = fixture(GUPSHUP);
            Arc::new(move |i| {
                let mut b = base.clone();
                b["payload"]["id"] = json!(id(i));
                b["payload"]["source"] = json!(phone(i));
                b["payload"]["sender"]["phone"] = json!(phone(i));
                Request::json(&b)
            })
        }
        "meta-cloud" => {
            let base = fixture(META);
            Arc::new(move |i| {
                let mut b = base.clone();
                let value = &mut b["entry"][0]["changes"][0]["value"];
                value["messages"][0]["id"] = json!(format!("wamid.{}", id(i)));
                value["messages"][0]["from"] = json!(phone(i));
                value["contacts"][0]["wa_id"] = json!(phone(i));
                let req = Request::json(&b);
                let signature = meta_signature(APP_SECRET, &req.body);
                req.header("x-hub-signature-256", signature)
            })
        }
        "telegram-bot" => {
            let base = fixture(TELEGRAM);
            Arc::new(move |i| {
                let mut b = base.clone();
                let chat = 6_000_000_000u64 + (i % 5000) as u64;
                b["update_id"] = json!(i);
                b["message"]["message_id"] = json!(i);
                b["message"]["from"]["id"] = json!(chat);
                b["message"]["chat"]["id"] = json!(chat);
                Request::json(&b).header("x-telegram-bot-api-secret-token", secret.clone())
            })
        }
        "twilio" => {
            let base = leadflow_shared::inbound::form_fields(TWILIO.trim().as_bytes());
            Arc::new(move |i| {
                let sid = format!("SM{}", id(i));
                let mut fields = base.clone();
                for (k, v) in &mut fields {
                    match k.as_str() {
                        "MessageSid" | "SmsSid" | "SmsMessageSid" => *v = sid.clone(),
                        "From" => *v = format!("+{}", phone(i)),
                        _ => {}
                    }
                }
                let signature = twilio::signature(AUTH_TOKEN, &url, &fields);
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&fields)
                    .finish();
                Request {
                    body: body.into_bytes(),
                    headers: vec![
                        ("content-type", "application/x-www-form-urlencoded".into()),
                        ("x-twilio-signature", signature),
                    ],
                }
            })
        }
        _ => {
            let base = fixture(HTTP_SMS);
            Arc::new(move |i| {
                let mut b = base.clone();
                b["id"] = json!(id(i));
                b["from"] = json!(format!("+{}", phone(i)));
                Request::json(&b)
            })
        }
    }
}

fn figures(r: &load::LoadResult) -> String {
    format!(
        "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
        r.rate(),
        r.p50_ms,
        r.p99_ms,
        r.errors
    )
}

pub async fn webhooks(scope: &mut Scope, quick: bool) -> Section {
    let secs = if quick { 2 } else { 6 };
    let concurrency = 64;
    let running = start(scope.config()?, Roles::api_only()).await?;
    let tenant = scope.tenant(&running.pool).await?;
    let key = scope.config()?.master_key.expect("scope sets a master key");
    let base = format!("http://{}", running.http_addr.expect("api role"));
    let mut rows = Vec::new();
    for (provider, channel_type, creds) in formats() {
        let credentials: Credentials = serde_json::from_value(creds)?;
        let f = ChannelFields {
            name: provider.to_string(),
            channel_type: channel_type.into(),
            provider: provider.to_string(),
            credentials,
            assistant_id: None,
            department_id: None,
            status: "active".into(),
        };
        let ch = channels::insert(&running.pool, &key, tenant.tenant_id, &f).await?;
        let plain = format!("{base}/webhooks/{}", ch.id);
        let secret = {
            use secrecy::ExposeSecret;
            channels::webhook_secret(&key, ch.id, ch.webhook_secret_enc.as_deref())?
                .expose_secret()
                .to_string()
        };
        // Providers without a signature carry the channel's secret in the URL.
        let url = match provider {
            "meta-cloud" | "telegram-bot" | "twilio" => plain.clone(),
            _ => format!("{plain}?token={}", secret),
        };
        let make = requests(provider, plain, secret.clone());
        let r = warm_then_measure(&url, concurrency, secs, make).await;
        rows.push(Row::new(
            &format!("/webhooks, {provider} format"),
            figures(&r),
            "",
            None,
        ));
    }
    let tenant_id = tenant.tenant_id.to_string();
    let hook = "http://127.0.0.1:9/hook".to_string();
    let make: Arc<dyn Fn(usize) -> Value + Send + Sync> = Arc::new(move |i| {
        json!({"tenant_id": tenant_id, "lead_id": format!("lead-{}", i % 5000), "role": "user", "content": "hello",
               "message_type": "text", "debounce": true, "postback_url": hook})
    });
    let url = format!("{base}/ai/process");
    let ours = warm_then_measure(&url, concurrency, secs, load::json_with_key(&tenant.api_key, make)).await;
    rows.push(Row::new("/ai/process (same run)", figures(&ours), "", None));
    running.shutdown().await;
    Ok((
        rows,
        vec![format!(
            "{concurrency} concurrent connections, {secs} s each after a 1 s warm-up, 5,000 distinct senders, every \
             message id new; the handler verifies the request the provider's way (URL token; Telegram's secret \
             header; Meta's HMAC-SHA256 of the body; Twilio's HMAC-SHA1 of URL and fields, which needs the channel's \
             decrypted credentials), parses the format, stores one event per message and enqueues it (no worker \
             runs, so nothing competes)"
        )],
    ))
}
