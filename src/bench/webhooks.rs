//! Webhook ingest: provider payloads posted to `/webhooks/{channel_id}` (verify, parse,
//! store once, enqueue), per provider format, next to `/ai/process` in the same run with
//! the same load generator. Only the API runs, as in the ingest section.

use std::sync::Arc;

use leadflow_shared::db::channels::{self, ChannelFields, Credentials};
use serde_json::{json, Value};

use super::sections::{warm_then_measure, Maker, Section};
use super::{Row, Scope};
use crate::{start, Roles};

const ZAPI: &str = include_str!("../../tests/fixtures/providers/zapi/webhook-received-text.json");
const EVOLUTION: &str =
    include_str!("../../tests/fixtures/providers/evolution/webhook-messages-upsert-conversation.json");
const GUPSHUP: &str = include_str!("../../tests/fixtures/providers/gupshup/v2-inbound-text.json");

fn phone(i: usize) -> String {
    format!("55119{:08}", i % 5000)
}

/// Request `i` of each format: a distinct message id, 5,000 distinct senders.
fn maker(provider: &str) -> Maker {
    let base: Value = serde_json::from_str(match provider {
        "z-api" => ZAPI,
        "evolution-api" => EVOLUTION,
        _ => GUPSHUP,
    })
    .expect("fixture is JSON");
    let provider = provider.to_string();
    let run = uuid::Uuid::new_v4().simple().to_string();
    Arc::new(move |i| {
        let mut b = base.clone();
        let id = format!("BENCH{}{i:010}", &run[..8]);
        match provider.as_str() {
            "z-api" => {
                b["messageId"] = json!(id);
                b["phone"] = json!(phone(i));
            }
            "evolution-api" => {
                b["data"]["key"]["id"] = json!(id);
                b["data"]["key"]["remoteJid"] = json!(format!("{}@s.whatsapp.net", phone(i)));
            }
            _ => {
                b["payload"]["id"] = json!(id);
                b["payload"]["source"] = json!(phone(i));
                b["payload"]["sender"]["phone"] = json!(phone(i));
            }
        }
        b
    })
}

pub async fn webhooks(scope: &mut Scope, quick: bool) -> Section {
    let secs = if quick { 2 } else { 6 };
    let concurrency = 64;
    let running = start(
        scope.config()?,
        Roles {
            api: true,
            worker: None,
            scheduler: false,
        },
    )
    .await?;
    let tenant = scope.tenant(&running.pool).await?;
    let key = scope.config()?.master_key.expect("scope sets a master key");
    let base = format!("http://{}", running.http_addr.expect("api role"));
    let mut rows = Vec::new();
    for (provider, creds) in [
        (
            "z-api",
            json!({"instance_id": "3E4F7360B552F0C2DBCB9E6774402775", "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F"}),
        ),
        (
            "evolution-api",
            json!({"base_url": "https://evo.example.com", "api_key": "k", "instance": "acme-vendas"}),
        ),
        (
            "gupshup",
            json!({"api_key": "k", "app_name": "AcmeImoveis", "source": "5511912345678"}),
        ),
    ] {
        let credentials: Credentials = serde_json::from_value(creds)?;
        let f = ChannelFields {
            name: provider.to_string(),
            channel_type: "whatsapp".into(),
            provider: provider.to_string(),
            credentials,
            assistant_id: None,
            department_id: None,
            status: "active".into(),
        };
        let ch = channels::insert(&running.pool, &key, tenant.tenant_id, &f).await?;
        let url = format!("{base}/webhooks/{}?token={}", ch.id, ch.webhook_secret);
        let r = warm_then_measure(&url, "unused", concurrency, secs, maker(provider)).await;
        rows.push(Row::new(
            &format!("/webhooks, {provider} format"),
            format!(
                "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
                r.rate(),
                r.p50_ms,
                r.p99_ms,
                r.errors
            ),
            "",
            None,
        ));
    }
    let tenant_id = tenant.tenant_id.to_string();
    let hook = "http://127.0.0.1:9/hook".to_string();
    let make: Maker = Arc::new(move |i| {
        json!({"tenant_id": tenant_id, "lead_id": format!("lead-{}", i % 5000), "role": "user", "content": "hello",
               "message_type": "text", "debounce": true, "postback_url": hook})
    });
    let ours = warm_then_measure(&format!("{base}/ai/process"), &tenant.api_key, concurrency, secs, make).await;
    rows.push(Row::new(
        "/ai/process (same run)",
        format!(
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
            ours.rate(),
            ours.p50_ms,
            ours.p99_ms,
            ours.errors
        ),
        "",
        None,
    ));
    running.shutdown().await;
    Ok((
        rows,
        vec![format!(
            "{concurrency} concurrent connections, {secs} s each after a 1 s warm-up, 5,000 distinct senders, every \
             message id new; the handler verifies the token, parses the provider's format, stores one event per message \
             and enqueues it (no worker runs, so nothing competes)"
        )],
    ))
}
