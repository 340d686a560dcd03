//! Synchronous `/ai/process` (`debounce: false`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{fake_ai, TestApp};

#[tokio::test]
async fn sync_reply_sees_system_prompt_history_and_message() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"system_prompt": "You sell solar panels.", "model": "gpt-test"}))
        .await;
    // History: a reply the business sent earlier, recorded without being answered.
    let mut earlier = app.msg("lead-1", "We install in 3 days.", false);
    earlier["role"] = json!("assistant");
    let (status, body) = app.process(&earlier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!(null));

    let (status, body) = app.process(&app.msg("lead-1", "How much is it?", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["response"], json!("reply to: How much is it?"));

    let reqs = app.ai.requests();
    assert_eq!(reqs.len(), 1);
    let msgs = fake_ai::messages(&reqs[0].body);
    assert_eq!(
        msgs,
        vec![
            ("system".to_string(), "You sell solar panels.".to_string()),
            ("assistant".to_string(), "We install in 3 days.".to_string()),
            ("user".to_string(), "How much is it?".to_string()),
        ]
    );
    assert_eq!(reqs[0].body["model"], json!("gpt-test"));
    let user = reqs[0].body["user"].as_str().expect("user field");
    assert!(
        !user.contains("lead-1") && user.len() >= 16,
        "the lead is identified by a hash: {user}"
    );
    assert_eq!(
        reqs[0].headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test")
    );

    // The reply is stored and becomes history for the next turn.
    let (status, conv) = app.get("/backend/leads/lead-1/messages").await;
    assert_eq!(status, StatusCode::OK);
    let roles: Vec<_> = conv["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(roles, ["assistant", "user", "assistant"]);
    assert_eq!(conv["data"][2]["content"], json!("reply to: How much is it?"));
    assert!(conv["data"][0]["created_at"].is_string());

    app.process(&app.msg("lead-1", "And installation?", false)).await;
    let second = fake_ai::messages(&app.ai.requests()[1].body);
    assert_eq!(second.len(), 5, "system, 3 history turns, the new message: {second:?}");
    assert_eq!(second[3].1, "reply to: How much is it?");

    let usage: (Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT prompt_tokens, completion_tokens FROM messages WHERE role = 'assistant' AND reply_to_burst IS NOT NULL LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        usage.0.is_some() && usage.1.is_some(),
        "token usage is stored: {usage:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn sync_timeout_is_504_with_job_id_and_the_reply_is_still_stored() {
    let app = TestApp::builder().env("LEADFLOW_SYNC_TIMEOUT", "500ms").start().await;
    app.ai.set_latency(Duration::from_millis(1500));
    let (status, body) = app.process(&app.msg("lead-slow", "hello?", false)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["success"], json!(false));
    let job_id = body["job_id"].as_str().expect("job_id").to_string();
    crate::support::eventually(Duration::from_secs(10), "the late reply to be stored", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to_burst = $1::uuid")
            .bind(&job_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn without_an_ai_key_replies_fail_clearly() {
    let app = TestApp::builder().env("LEADFLOW_AI_API_KEY", "").start().await;
    let (status, body) = app.process(&app.msg("lead-nokey", "hi", false)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], json!("ai_not_configured"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no AI provider is configured"));
    assert_eq!(app.ai.request_count(), 0, "nothing pretends to answer");
    app.stop().await;
}

#[tokio::test]
async fn a_tenants_waiting_synchronous_callers_are_capped() {
    let owned = TestApp::builder()
        .env("LEADFLOW_SYNC_MAX_WAITS_PER_TENANT", "2")
        .start()
        .await;
    owned.ai.set_latency(std::time::Duration::from_millis(1500));
    capped_waits(&owned).await;
    owned.stop().await;
}

async fn capped_waits(app: &TestApp) {
    let call = |lead: &str| {
        let body = app.msg(lead, "oi", false);
        async move { app.process(&body).await }
    };
    let (a, b, c) = tokio::join!(call("lead-w1"), call("lead-w2"), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        call("lead-w3").await
    });
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(c.0, StatusCode::TOO_MANY_REQUESTS, "{}", c.1);
    assert_eq!(c.1["error"]["code"], json!("too_many_waiting"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE role = 'user'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 2, "the refused call stored nothing");
    // Once they are answered, the slots are free again.
    let (status, _) = call("lead-w4").await;
    assert_eq!(status, StatusCode::OK);
}
