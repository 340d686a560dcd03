//! One lead on two channels (Leavo's multi-channel model): each channel answers with its
//! own assistant through its own provider, the lead channels count right, and a human
//! taking over on one channel pauses the AI there only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, webhook, zapi_text, Channel};
use crate::support::fake_providers::FakeProviders;
use crate::support::TestApp;

const ZAPI_FROM_ME: &str = include_str!("../fixtures/providers/zapi/webhook-received-fromme-api.json");
const TELEGRAM_TEXT: &str = include_str!("../fixtures/providers/telegram/update-text.json");
const LEAD: &str = "/backend/leads/+5511987654321";

fn telegram(message_id: i64, extra: Value) -> Value {
    let mut p: Value = serde_json::from_str(TELEGRAM_TEXT).unwrap();
    p["update_id"] = json!(845123907 + message_id);
    p["message"]["message_id"] = json!(message_id);
    let m = p["message"].as_object_mut().unwrap();
    m.remove("text");
    for (k, v) in extra.as_object().unwrap() {
        m.insert(k.clone(), v.clone());
    }
    p
}

/// The lead's two channels, Z-API and Telegram, answered by the given assistants (null:
/// the tenant's default).
async fn two_channels(app: &TestApp, providers: &FakeProviders, wa_bot: &Value, tg_bot: &Value) -> (Channel, Channel) {
    let wa = channel(
        app,
        json!({"name": "WhatsApp vendas", "type": "whatsapp", "provider": "z-api", "assistant_id": wa_bot,
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F", "base_url": providers.base_url}}),
    )
    .await;
    let tg = channel(
        app,
        json!({"name": "Telegram", "type": "telegram", "provider": "telegram-bot", "assistant_id": tg_bot,
               "credentials": {"bot_token": "7123456789:AAH3kZ-example-token-Qw8", "base_url": providers.base_url}}),
    )
    .await;
    (wa, tg)
}

/// (path of the send, its text) for every message the providers were asked to send.
fn sends(providers: &FakeProviders) -> Vec<(String, String)> {
    providers
        .sent()
        .iter()
        .map(|s| {
            let text = s.body.get("message").or_else(|| s.body.get("text")).cloned();
            (
                s.path.clone(),
                text.and_then(|t| t.as_str().map(String::from)).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_lead_on_whatsapp_and_telegram_gets_two_lead_channels_each_with_its_assistant() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let (_, wa_bot) = app
        .post(
            "/backend/assistants",
            &json!({"name": "WhatsApp IA", "model": "gpt-4o-mini", "debounce_seconds": 0.2, "human_pause_minutes": 30}),
        )
        .await;
    let (_, tg_bot) = app
        .post(
            "/backend/assistants",
            &json!({"name": "Telegram IA", "model": "gpt-4o", "debounce_seconds": 0.2}),
        )
        .await;
    let (wa, tg) = two_channels(&app, &providers, &wa_bot["id"], &tg_bot["id"]).await;
    let tg_path = format!("/webhooks/{}", tg.id);
    let tg_secret = [("X-Telegram-Bot-Api-Secret-Token", tg.token.as_str())];

    // WhatsApp first: answered by the WhatsApp assistant through Z-API.
    webhook(&app, &wa.path, &zapi_text("3EB0MC0001", "Oi, vim pelo WhatsApp"), &[]).await;
    providers.wait_for(1, Duration::from_secs(15)).await;
    // On Telegram the lead shares their own contact card (the only way Telegram reveals a
    // phone): the chat joins the WhatsApp lead. Then they write there.
    let card = json!({"contact": {"phone_number": "5511987654321", "first_name": "Mariana", "user_id": 6120483377i64}});
    webhook(&app, &tg_path, &telegram(2001, card), &tg_secret).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    webhook(
        &app,
        &tg_path,
        &telegram(2002, json!({"text": "E agora pelo Telegram"})),
        &tg_secret,
    )
    .await;
    providers.wait_for(2, Duration::from_secs(15)).await;

    let reqs = app.ai.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].body["model"],
        json!("gpt-4o-mini"),
        "the WhatsApp channel's assistant"
    );
    assert_eq!(
        reqs[1].body["model"],
        json!("gpt-4o"),
        "the Telegram channel's assistant"
    );
    let out = sends(&providers);
    assert!(out[0].0.ends_with("/send-text"), "{out:?}");
    assert_eq!(out[0].1, "reply to: Oi, vim pelo WhatsApp");
    assert_eq!(out[1].0, "/bot7123456789:AAH3kZ-example-token-Qw8/sendMessage");
    assert_eq!(out[1].1, "reply to: E agora pelo Telegram");

    let (status, chans) = app.get(&format!("{LEAD}/channels")).await;
    assert_eq!(status, StatusCode::OK, "{chans}");
    let chans = chans["data"].as_array().unwrap().clone();
    assert_eq!(chans.len(), 2, "one lead, two lead channels: {chans:?}");
    let by_type = |t: &str| chans.iter().find(|c| c["channel_type"] == json!(t)).unwrap().clone();
    let (wa_lc, tg_lc) = (by_type("whatsapp"), by_type("telegram"));
    assert_eq!(wa_lc["assistant_id"], wa_bot["id"]);
    assert_eq!(tg_lc["assistant_id"], tg_bot["id"]);
    assert_eq!(
        (wa_lc["message_count"].clone(), wa_lc["is_primary"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(
        (tg_lc["message_count"].clone(), tg_lc["is_primary"].clone()),
        (json!(1), json!(false))
    );

    // A human answers on the WhatsApp phone: WhatsApp is paused, Telegram is not.
    let mut human: Value = serde_json::from_str(ZAPI_FROM_ME).unwrap();
    human["messageId"] = json!("3EB0HUMAN0001");
    human["fromApi"] = json!(false);
    human["text"]["message"] = json!("Oi Mariana, é a Ana. Te ligo já.");
    webhook(&app, &wa.path, &human, &[]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    webhook(&app, &wa.path, &zapi_text("3EB0MC0002", "Ok, aguardo"), &[]).await;
    webhook(
        &app,
        &tg_path,
        &telegram(2003, json!({"text": "Tem vaga de garagem?"})),
        &tg_secret,
    )
    .await;
    providers.wait_for(3, Duration::from_secs(15)).await;
    app.settle().await;
    let out = sends(&providers);
    assert_eq!(out.len(), 3, "only Telegram answered: {out:?}");
    // The conversation is the lead's, across channels: the Telegram assistant sees what
    // was said on WhatsApp as history.
    assert!(out[2].1.ends_with("Tem vaga de garagem?"), "{out:?}");

    let (_, chans) = app.get(&format!("{LEAD}/channels")).await;
    let paused = |t: &str| {
        chans["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel_type"] == json!(t))
            .unwrap()["paused_until"]
            .clone()
    };
    assert!(paused("whatsapp").is_string(), "{chans}");
    assert!(paused("telegram").is_null(), "{chans}");
    // Whoever held the phone attended the lead on WhatsApp.
    let (_, att) = app.get(&format!("{LEAD}/attendants")).await;
    let att = att["data"].as_array().unwrap();
    assert_eq!(att.len(), 1, "{att:?}");
    assert_eq!(att[0]["source"], json!("phone"));
    assert_eq!(att[0]["channel_name"], json!("WhatsApp vendas"));
    assert_eq!(att[0]["assistant_name"], json!("WhatsApp IA"));
    assert_eq!(att[0]["message_count"], json!(1));
    assert!(
        att[0]["user_id"].is_null(),
        "nobody is assigned to this lead channel: {att:?}"
    );

    // Released on WhatsApp only: the next WhatsApp message is answered again.
    let (status, resp) = app
        .post(&format!("{LEAD}/release"), &json!({"channel_id": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], json!("channel_id"));
    let (status, _) = app
        .post(&format!("{LEAD}/release"), &json!({"channel_id": wa.id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    webhook(&app, &wa.path, &zapi_text("3EB0MC0003", "Alguém aí?"), &[]).await;
    providers.wait_for(4, Duration::from_secs(15)).await;
    let out = sends(&providers);
    assert!(out[3].0.ends_with("/send-text"));
    assert_eq!(
        out[3].1, "reply to: Alguém aí?",
        "the paused message was recorded, not answered"
    );
    app.stop().await;
}

#[tokio::test]
async fn late_whatsapp_messages_never_move_into_the_leads_telegram_burst() {
    // Both channels answer with the tenant's one assistant: only the channel tells the
    // lead's two conversations apart.
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.0, "max_wait_seconds": 1.5}))
        .await;
    let (wa, tg) = two_channels(&app, &providers, &Value::Null, &Value::Null).await;
    let tg_path = format!("/webhooks/{}", tg.id);
    let tg_secret = [("X-Telegram-Bot-Api-Secret-Token", tg.token.as_str())];
    // One lead on both: WhatsApp first, then the Telegram chat shares the phone.
    webhook(&app, &wa.path, &zapi_text("3EB0LATE00", "Oi"), &[]).await;
    providers.wait_for(1, Duration::from_secs(15)).await;
    let card = json!({"contact": {"phone_number": "5511987654321", "first_name": "Mariana", "user_id": 6120483377i64}});
    webhook(&app, &tg_path, &telegram(3001, card), &tg_secret).await;
    crate::support::eventually(Duration::from_secs(15), "the lead's bursts settled", || async {
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM bursts WHERE status IN ('open', 'generating')")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_events WHERE status = 'pending'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (live == 0 && events == 0).then_some(())
    })
    .await;
    let before = providers.sent().len();

    // A WhatsApp burst is generating (slowly) when the lead writes again on WhatsApp,
    // before its deadline; by the time the reply is ready the deadline has passed, so the
    // new message is split off. Meanwhile a Telegram burst is open for the same lead.
    app.ai.set_latency(Duration::from_secs(3));
    webhook(&app, &wa.path, &zapi_text("3EB0LATE01", "Tem garagem?"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    webhook(&app, &wa.path, &zapi_text("3EB0LATE02", "E aceita pet?"), &[]).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    webhook(
        &app,
        &tg_path,
        &telegram(3002, json!({"text": "Pelo Telegram: qual o valor?"})),
        &tg_secret,
    )
    .await;
    let all = providers.wait_for(before + 3, Duration::from_secs(30)).await;
    assert_eq!(all.len(), before + 3);
    let mut got: Vec<(bool, String)> = sends(&providers)[before..]
        .iter()
        .map(|(path, text)| (path.contains("/send-text"), text.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (false, "reply to: Pelo Telegram: qual o valor?".to_string()),
            (true, "reply to: E aceita pet?".to_string()),
            (true, "reply to: Tem garagem?".to_string()),
        ],
        "each channel answers its own messages"
    );
    // The Telegram prompt never saw the WhatsApp message as part of its burst.
    let tg_prompt = app
        .ai
        .requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("Pelo Telegram"))
        .unwrap();
    let turns = tg_prompt.body["messages"].as_array().unwrap();
    let last = turns.last().unwrap()["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!last.contains("aceita pet"), "{last}");
    app.stop().await;
}
