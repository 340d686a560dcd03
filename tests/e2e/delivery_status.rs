//! What providers report about the replies we sent reaches the conversation an integrator
//! reads (`GET /backend/leads/{lead_id}/messages`): Meta Cloud's `statuses[]`, Gupshup v2's
//! `message-event`s and Gupshup v3's Meta-format statuses keyed by its own `gs_id`. A
//! failure shows `failed` with the provider's code and a readable reason and raises
//! `message.failed` once; delivered and read move a reply on, never back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::count;
use crate::official::{create_gupshup_channel, create_meta_channel, post_raw, sign};
use crate::support::fake_providers::FakeProviders;
use crate::support::receiver::Receiver;
use crate::support::{eventually, TestApp};

const META_TEXT: &str = include_str!("../fixtures/providers/meta-cloud/webhook-text.json");
const META_FAILED: &str = include_str!("../fixtures/providers/meta-cloud/webhook-status-failed.json");
const GUPSHUP_TEXT: &str = include_str!("../fixtures/providers/gupshup/v2-inbound-text.json");
const GUPSHUP_V2_FAILED: &str = include_str!("../fixtures/providers/gupshup/v2-event-failed.json");
const GUPSHUP_V3_FAILED: &str = include_str!("../fixtures/providers/gupshup/v3-status-failed.json");
const LEAD: &str = "/backend/leads/+5511987654321/messages";

struct Meta {
    providers: FakeProviders,
    hooks: Receiver,
    app: TestApp,
    path: String,
}

async fn meta(app: TestApp) -> Meta {
    let providers = FakeProviders::start().await;
    let hooks = Receiver::start().await;
    let (status, c) = app
        .post(
            "/backend/notification-configs",
            &json!({"events": ["message.failed"], "target": "webhook", "url": hooks.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let path = create_meta_channel(&app, &providers.base_url, json!({})).await;
    Meta {
        providers,
        hooks,
        app,
        path,
    }
}

impl Meta {
    async fn post(&self, body: &[u8]) {
        let status = post_raw(&self.app, &self.path, body, &[("x-hub-signature-256", sign(body))]).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// The lead writes `text` (as message `wamid`): returns the ids of the reply's parts.
    async fn lead_writes(&self, wamid: &str, text: &str, parts: usize) -> Vec<String> {
        let mut hook: Value = serde_json::from_str(META_TEXT).unwrap();
        let m = &mut hook["entry"][0]["changes"][0]["value"]["messages"][0];
        m["id"] = json!(wamid);
        m["text"]["body"] = json!(text);
        let before = self.providers.sent().len();
        self.post(&serde_json::to_vec(&hook).unwrap()).await;
        let sent = self.providers.wait_for(before + parts, Duration::from_secs(15)).await;
        let ids: Vec<String> = sent[before..].iter().map(|s| s.id.clone()).collect();
        for id in &ids {
            crate::support::eventually_text(
                &self.app,
                Duration::from_secs(10),
                "the part recorded as sent",
                &format!("SELECT status FROM outbox WHERE provider_message_id = '{id}' AND status <> 'pending'"),
            )
            .await;
        }
        ids
    }

    /// Meta reports `status` for message `id` (failures with 131047, from the fixture).
    async fn report(&self, id: &str, status: &str) {
        let mut hook: Value = serde_json::from_str(&META_FAILED.replace("{{ID}}", id)).unwrap();
        let s = &mut hook["entry"][0]["changes"][0]["value"]["statuses"][0];
        if status != "failed" {
            s["status"] = json!(status);
            s.as_object_mut().unwrap().remove("errors");
        }
        self.post(&serde_json::to_vec(&hook).unwrap()).await;
    }
}

/// The conversation's AI replies, oldest first.
async fn replies(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get(LEAD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .cloned()
        .collect()
}

/// Waits until the `n`-th reply (0-based) shows `status`, and returns it.
async fn reply_becomes(app: &TestApp, n: usize, status: &str) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("reply {n} to show {status}"),
        || async { replies(app).await.get(n).filter(|r| r["status"] == status).cloned() },
    )
    .await
}

/// Waits until every stored webhook event is handled.
async fn events_settle(app: &TestApp) {
    eventually(Duration::from_secs(15), "every webhook event handled", || async {
        let pending = count(app, "SELECT count(*) FROM inbound_events WHERE status = 'pending'").await;
        (pending == 0).then_some(())
    })
    .await;
}

async fn provider_reports(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM outbox_status_events WHERE source = 'provider'",
    )
    .await
}

/// Each part's state, in order.
fn part_states(reply: &Value) -> Vec<String> {
    reply["delivery"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_meta_failure_shows_failed_with_its_code_and_reason_and_notifies_once() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let m = meta(app).await;
    let ids = m.lead_writes("wamid.IN1", "Ainda está disponível?", 1).await;
    let reply = reply_becomes(&m.app, 0, "sent").await;
    assert_eq!(reply["delivery"]["provider_message_id"], json!(ids[0]));

    // Meta reports the reply failed (24-hour window), then the same report again, then a
    // late `sent`: the reply stays failed, and the business hears about it once.
    m.report(&ids[0], "failed").await;
    m.report(&ids[0], "failed").await;
    let reply = reply_becomes(&m.app, 0, "failed").await;
    let d = &reply["delivery"];
    assert_eq!(d["status"], json!("failed"));
    assert_eq!(d["error_code"], json!("131047"));
    assert_eq!(d["reason"], json!("outside the 24-hour window: send a template"));
    m.report(&ids[0], "sent").await;
    events_settle(&m.app).await;
    let reply = replies(&m.app).await.remove(0);
    assert_eq!(reply["status"], json!("failed"));
    let history: Vec<(&str, &str, bool)> = reply["delivery"]["parts"][0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert!(h["at"].is_string(), "{h}");
            (
                h["source"].as_str().unwrap(),
                h["status"].as_str().unwrap(),
                h["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("send", "sent", true),
            ("provider", "failed", true),
            ("provider", "sent", false)
        ],
        "the repeated failure is the same event, stored once"
    );

    let got = m.hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json["type"], json!("message.failed"));
    let data = &got[0].json["data"];
    assert_eq!(data["lead_id"], json!("+5511987654321"));
    assert_eq!(data["error_code"], json!("131047"));
    assert_eq!(data["reason"], json!("outside the 24-hour window: send a template"));
    assert_eq!(data["channel_name"], json!("WhatsApp oficial"));
    assert_eq!(data["message_id"], reply["id"]);
    let raised = count(
        &m.app,
        "SELECT count(*) FROM notifications WHERE event = 'message.failed'",
    )
    .await;
    assert_eq!(raised, 1, "one notification for one failed message");
    assert_eq!(m.hooks.deliveries().len(), 1);
    m.app.stop().await;
}

#[tokio::test]
async fn delivered_then_read_shows_read_and_late_reports_never_move_it_back() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let m = meta(app).await;
    // In order: delivered, then read.
    let first = m.lead_writes("wamid.IN2", "Tem vaga de garagem?", 1).await;
    m.report(&first[0], "delivered").await;
    reply_becomes(&m.app, 0, "delivered").await;
    m.report(&first[0], "read").await;
    reply_becomes(&m.app, 0, "read").await;
    // Out of order, as WhatsApp may send them: read, then delivered, then sent. (Each is
    // awaited so the history's order is the order they were sent in.)
    let second = m.lead_writes("wamid.IN5", "E o IPTU?", 1).await;
    for (n, status) in ["read", "delivered", "sent"].into_iter().enumerate() {
        m.report(&second[0], status).await;
        let want = n as i64 + 3;
        eventually(Duration::from_secs(10), "the report recorded", || async {
            (provider_reports(&m.app).await == want).then_some(())
        })
        .await;
    }
    let reply = reply_becomes(&m.app, 1, "read").await;
    let applied: Vec<(String, bool)> = reply["delivery"]["parts"][0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["source"] == "provider")
        .map(|h| {
            (
                h["status"].as_str().unwrap().to_owned(),
                h["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [
            ("read".into(), true),
            ("delivered".into(), false),
            ("sent".into(), false)
        ]
    );
    assert_eq!(reply["delivery"]["error_code"], Value::Null);
    assert!(m.hooks.deliveries().is_empty(), "nothing failed, nothing notified");
    m.app.stop().await;
}

#[tokio::test]
async fn a_reply_sent_in_parts_shows_each_parts_state() {
    let app = TestApp::builder().env("LEADFLOW_TYPING_DELAY", "50ms").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "split_replies": true}))
        .await;
    let m = meta(app).await;
    let ids = m.lead_writes("wamid.IN3", "Tem garagem?\n\nAceita pet?", 2).await;
    m.report(&ids[0], "read").await;
    m.report(&ids[1], "delivered").await;
    let reply = reply_becomes(&m.app, 0, "delivered").await;
    assert_eq!(part_states(&reply), ["read", "delivered"], "{reply}");
    // The second part then fails after all: the reply did not fully arrive.
    m.report(&ids[1], "failed").await;
    events_settle(&m.app).await;
    let reply = replies(&m.app).await.remove(0);
    assert_eq!(
        reply["status"],
        json!("delivered"),
        "delivered outranks a later failure"
    );
    // A part that only got as far as `sent` does fail the reply.
    let more = m.lead_writes("wamid.IN4", "Qual o valor?\n\nE o condomínio?", 2).await;
    m.report(&more[0], "delivered").await;
    m.report(&more[1], "failed").await;
    let reply = reply_becomes(&m.app, 1, "failed").await;
    assert_eq!(part_states(&reply), ["delivered", "failed"]);
    assert_eq!(reply["delivery"]["error_code"], json!("131047"));
    let got = m.hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json["data"]["message_id"], reply["id"]);
    m.app.stop().await;
}

#[tokio::test]
async fn gupshup_v2_and_v3_failures_match_the_id_its_send_returned() {
    let providers = FakeProviders::start().await;
    let hooks = Receiver::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.post(
        "/backend/notification-configs",
        &json!({"events": ["message.failed"], "target": "webhook", "url": hooks.url}),
    )
    .await;
    let ch = create_gupshup_channel(&app, &providers.base_url).await;
    let path = ch["webhook_path"].as_str().unwrap().to_owned();
    let post = |body: String| {
        let (app, path) = (&app, &path);
        async move {
            let status = post_raw(app, path, body.as_bytes(), &[]).await;
            assert_eq!(status, StatusCode::OK);
        }
    };
    let lead_writes = |id: &'static str, n: usize| {
        let (providers, post) = (&providers, &post);
        async move {
            let mut hook: Value = serde_json::from_str(GUPSHUP_TEXT).unwrap();
            hook["payload"]["id"] = json!(id);
            post(hook.to_string()).await;
            providers.wait_for(n, Duration::from_secs(15)).await[n - 1].id.clone()
        }
    };

    // v2: a `message-event` of type `failed`, keyed by the id the send returned.
    let first = lead_writes("ABEGkZlgQyWAVAo-sL2-A1", 1).await;
    reply_becomes(&app, 0, "sent").await;
    post(GUPSHUP_V2_FAILED.replace("{{ID}}", &first)).await;
    let reply = reply_becomes(&app, 0, "failed").await;
    assert_eq!(reply["delivery"]["error_code"], json!("1002"));
    assert_eq!(reply["delivery"]["reason"], json!("the number is not on WhatsApp"));
    assert_eq!(reply["delivery"]["provider_message_id"], json!(first));

    // v3: Meta's envelope, with Gupshup's `gs_id` beside a wamid Leadflow never saw.
    let second = lead_writes("ABEGkZlgQyWAVAo-sL2-A2", 2).await;
    reply_becomes(&app, 1, "sent").await;
    post(GUPSHUP_V3_FAILED.replace("{{ID}}", &second)).await;
    let reply = reply_becomes(&app, 1, "failed").await;
    assert_eq!(reply["delivery"]["error_code"], json!("131047"));
    assert_eq!(
        reply["delivery"]["reason"],
        json!("outside the 24-hour window: send a template")
    );
    let got = hooks.wait_for(2, Duration::from_secs(10)).await;
    let codes: Vec<&Value> = got.iter().map(|d| &d.json["data"]["error_code"]).collect();
    assert_eq!(codes, [&json!("1002"), &json!("131047")]);

    // When Gupshup's own id matches nothing, the wamid beside it is tried.
    let third = lead_writes("ABEGkZlgQyWAVAo-sL2-A3", 3).await;
    reply_becomes(&app, 2, "sent").await;
    let v3: Value = serde_json::from_str(&GUPSHUP_V3_FAILED.replace("{{ID}}", "x")).unwrap();
    let wamid = v3["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sqlx::query("UPDATE outbox SET provider_message_id = $1 WHERE provider_message_id = $2")
        .bind(&wamid)
        .bind(&third)
        .execute(&app.pool)
        .await
        .unwrap();
    post(GUPSHUP_V3_FAILED.replace("{{ID}}", "11111111-1111-1111-1111-111111111111")).await;
    let reply = reply_becomes(&app, 2, "failed").await;
    assert_eq!(reply["delivery"]["provider_message_id"], json!(wamid));

    // A report about a message this channel never sent is kept, visibly unmatched.
    post(
        GUPSHUP_V3_FAILED
            .replace("{{ID}}", "00000000-0000-0000-0000-00000000dead")
            .replace(&wamid, "wamid.NEVER-SENT"),
    )
    .await;
    // It waits a minute for a send whose id is not recorded yet; make that minute pass.
    sqlx::query(
        "UPDATE inbound_events SET created_at = now() - interval '2 minutes' WHERE dedupe_key LIKE 'status:00000000%'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let note = crate::support::eventually_text(
        &app,
        Duration::from_secs(20),
        "the unmatched report ignored with a reason",
        "SELECT note FROM inbound_events WHERE dedupe_key LIKE 'status:00000000%' AND status = 'ignored'",
    )
    .await;
    assert!(note.contains("matches no message"), "{note}");
    assert!(note.contains("00000000-0000-0000-0000-00000000dead"), "{note}");
    hooks.wait_for(3, Duration::from_secs(10)).await;
    app.settle().await;
    assert_eq!(hooks.deliveries().len(), 3, "one message.failed per failed message");
    app.stop().await;
}
