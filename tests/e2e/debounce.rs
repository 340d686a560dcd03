//! Bursts: quiet period, max wait, one reply per burst, one generation per lead,
//! supersede, idempotency, human pause.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{last_user_turn, verify_signature, TestApp};

#[tokio::test]
async fn burst_of_n_is_one_call_one_signed_postback() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.0, "max_wait_seconds": 20}))
        .await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        let (status, body) = app.process(&app.msg("lead-b", &format!("part {i}"), true)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["queued"], json!(true));
        ids.push(body["message_id"].as_str().unwrap().to_string());
    }
    let got = app.receiver.wait_for(1, Duration::from_secs(15)).await;
    app.settle().await;
    assert_eq!(app.ai.request_count(), 1, "exactly one generation for the burst");
    assert_eq!(app.receiver.deliveries().len(), 1, "exactly one postback");
    let d = &got[0];
    verify_signature(&app.tenant.postback_secret, d);
    assert!(d.headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
    let turn = last_user_turn(&app.ai.requests()[0].body);
    assert_eq!(turn, "part 1\npart 2\npart 3\npart 4\npart 5", "all messages, in order");
    assert_eq!(d.json["success"], json!(true));
    assert_eq!(d.json["lead_id"], json!("lead-b"));
    assert_eq!(d.json["tenant_id"], json!(app.tenant.tenant_id.to_string()));
    assert_eq!(d.json["messages_processed"], json!(5));
    assert_eq!(d.json["response"], json!(format!("reply to: {turn}")));
    assert!(d.json["timestamp"].is_string());
    let got_ids: Vec<String> = d.json["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got_ids, ids);
    app.stop().await;
}

#[tokio::test]
async fn quiet_period_flush_is_timed_from_the_last_message() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.5, "max_wait_seconds": 30}))
        .await;
    app.process(&app.msg("lead-q", "one", true)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let last = Instant::now();
    app.process(&app.msg("lead-q", "two", true)).await;
    let reqs = app.ai.wait_for_requests(1, Duration::from_secs(10)).await;
    let waited = reqs[0].at.duration_since(last);
    assert!(
        waited >= Duration::from_millis(1400),
        "flushed before the lead was quiet: {waited:?}"
    );
    assert!(waited <= Duration::from_millis(2500), "flush came late: {waited:?}");
    assert_eq!(last_user_turn(&reqs[0].body), "one\ntwo");
    // The generation the request started finishes before the test does.
    app.receiver.wait_for(1, Duration::from_secs(10)).await;
    app.settle().await;
    app.stop().await;
}

#[tokio::test]
async fn max_wait_flushes_a_lead_that_never_stops() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.0, "max_wait_seconds": 2.5}))
        .await;
    let first = Instant::now();
    // A message every 400 ms keeps the quiet period from ever elapsing.
    let mut sent = 0;
    while app.ai.request_count() == 0 && first.elapsed() < Duration::from_secs(6) {
        app.process(&app.msg("lead-m", &format!("m{sent}"), true)).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let reqs = app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    let waited = reqs[0].at.duration_since(first);
    assert!(
        waited >= Duration::from_millis(2400),
        "flushed before max wait: {waited:?}"
    );
    assert!(waited <= Duration::from_millis(3500), "max wait overshot: {waited:?}");
    // The generation (and anything the last messages started) finishes first.
    app.settle().await;
    app.stop().await;
}

#[tokio::test]
async fn two_hundred_leads_bursting_at_once_are_not_mixed_up() {
    let app = TestApp::start().await;
    // A quiet period the two sends of every lead fit in even under the whole suite's load
    // (with 1 s, a lead's second message sometimes came after its burst had started and
    // was rightly answered by a regeneration: one more AI call than this test counts).
    app.set_assistant(json!({"debounce_seconds": 3.0, "max_wait_seconds": 20}))
        .await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for lead in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for part in ["a", "b"] {
                let (status, body) = app
                    .process(&app.msg(&format!("lead-{lead}"), &format!("{lead}-{part}"), true))
                    .await;
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = app.receiver.wait_for(200, Duration::from_secs(60)).await;
    app.settle().await;
    assert_eq!(app.ai.request_count(), 200);
    assert_eq!(app.receiver.deliveries().len(), 200);
    let mut leads = std::collections::HashSet::new();
    for d in &got {
        let lead = d.json["lead_id"]
            .as_str()
            .unwrap()
            .trim_start_matches("lead-")
            .to_string();
        assert_eq!(
            d.json["response"],
            json!(format!("reply to: {lead}-a\n{lead}-b")),
            "postback for its own lead"
        );
        assert_eq!(d.json["messages_processed"], json!(2));
        leads.insert(lead);
    }
    assert_eq!(leads.len(), 200);
    std::sync::Arc::try_unwrap(app).ok().expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_message_during_a_slow_generation_supersedes_the_draft() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3, "max_wait_seconds": 30}))
        .await;
    app.ai.set_latency(Duration::from_millis(1500));
    app.process(&app.msg("lead-s", "first", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    // The generation is in flight; the lead writes again.
    app.process(&app.msg("lead-s", "second", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.receiver.deliveries().len(),
        1,
        "the superseded draft is never delivered"
    );
    assert_eq!(got[0].json["response"], json!("reply to: first\nsecond"));
    assert_eq!(got[0].json["messages_processed"], json!(2));
    assert_eq!(app.ai.request_count(), 2, "the generation ran again with both messages");
    app.stop().await;
}

#[tokio::test]
async fn past_max_wait_the_reply_goes_out_and_newer_messages_form_the_next_burst() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "max_wait_seconds": 0.5}))
        .await;
    app.ai.set_latency(Duration::from_millis(1200));
    app.process(&app.msg("lead-x", "first", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    app.process(&app.msg("lead-x", "late", true)).await;
    let got = app.receiver.wait_for(2, Duration::from_secs(15)).await;
    let mut responses: Vec<String> = got
        .iter()
        .map(|d| d.json["response"].as_str().unwrap().to_string())
        .collect();
    responses.sort();
    assert_eq!(responses, ["reply to: first", "reply to: late"]);
    // One generation per lead: the second started only after the first finished.
    let reqs = app.ai.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(1100));
    app.stop().await;
}

#[tokio::test]
async fn the_same_message_id_twice_is_one_message() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.5})).await;
    let mut m = app.msg("lead-i", "only once", true);
    m["message_id"] = json!("wamid.123");
    let (s1, b1) = app.process(&m).await;
    let (s2, b2) = app.process(&m).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(
        b1["message_id"], b2["message_id"],
        "the repeat is acknowledged as the same message"
    );
    assert_eq!(b2["duplicate"], json!(true));
    // The Idempotency-Key header means the same.
    let resp = app
        .http
        .post(format!("{}/ai/process", app.base))
        .bearer_auth(app.key())
        .header("Idempotency-Key", "wamid.123")
        .json(&app.msg("lead-i", "only once", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let got = app.receiver.wait_for(1, Duration::from_secs(10)).await;
    app.settle().await;
    assert_eq!(got[0].json["messages_processed"], json!(1));
    assert_eq!(app.receiver.deliveries().len(), 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'user'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_human_message_pauses_the_ai_for_the_lead() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3, "human_pause_minutes": 1}))
        .await;
    let mut human = app.msg("lead-h", "Hi, Ana here from sales.", false);
    human["role"] = json!("human");
    let (status, body) = app.process(&human).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["paused_until"].is_string());

    let (status, body) = app.process(&app.msg("lead-h", "great, thanks", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!(null));
    assert!(body["reason"].as_str().unwrap().starts_with("human_takeover"), "{body}");
    let (status, body) = app.process(&app.msg("lead-h", "are you there?", true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["queued"], json!(false));
    app.settle().await;
    assert_eq!(app.ai.request_count(), 0, "no reply while a human has the lead");
    assert!(app.receiver.deliveries().is_empty());

    // Other leads are unaffected; and when the pause ends the lead is answered again.
    let (status, _) = app.process(&app.msg("lead-other", "hello", false)).await;
    assert_eq!(status, StatusCode::OK);
    sqlx::query("UPDATE leads SET paused_until = now() - interval '1 second' WHERE external_id = 'lead-h'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, body) = app.process(&app.msg("lead-h", "back?", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["response"].as_str().is_some_and(|r| r.ends_with("back?")),
        "{body}"
    );
    assert_eq!(last_user_turn(&app.ai.requests().last().unwrap().body), "back?");
    // The messages typed during the pause are in the history, with the human as the business.
    let msgs = crate::support::fake_ai::messages(&app.ai.requests().last().unwrap().body);
    assert!(
        msgs.contains(&("assistant".into(), "Hi, Ana here from sales.".into())),
        "{msgs:?}"
    );
    assert!(msgs.contains(&("user".into(), "are you there?".into())), "{msgs:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_pending_burst_is_dropped_when_a_human_takes_over() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.0})).await;
    app.process(&app.msg("lead-d", "hello?", true)).await;
    let mut human = app.msg("lead-d", "I'll handle this one", false);
    human["role"] = json!("human");
    app.process(&human).await;
    app.wait_burst_status("dropped").await;
    assert_eq!(app.ai.request_count(), 0);
    assert!(app.receiver.deliveries().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_human_taking_over_during_a_generation_drops_the_draft() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.ai.set_latency(Duration::from_millis(1500));
    app.process(&app.msg("lead-g", "hello?", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    let mut human = app.msg("lead-g", "Ana here, I'll take it", false);
    human["role"] = json!("human");
    app.process(&human).await;
    app.wait_burst_status("dropped").await;
    app.settle().await;
    assert!(app.receiver.deliveries().is_empty(), "no postback talks over the human");
    app.stop().await;
}

#[tokio::test]
async fn late_messages_are_answered_before_newer_ones() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "max_wait_seconds": 0.6}))
        .await;
    app.ai.set_latency(Duration::from_millis(1500));
    app.process(&app.msg("lead-o", "first", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    // Joins the generating burst (before its deadline)…
    app.process(&app.msg("lead-o", "late", true)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // …and this one comes after the deadline, while the first generation still runs.
    app.process(&app.msg("lead-o", "newest", true)).await;
    let got = app.receiver.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let responses: Vec<_> = got
        .iter()
        .map(|d| d.json["response"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        responses,
        ["reply to: first", "reply to: late\nnewest"],
        "accepted order is answered order"
    );
    assert_eq!(app.receiver.deliveries().len(), 2);
    app.stop().await;
}
