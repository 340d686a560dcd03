//! AI provider failures, by class.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Scripted, TestApp};

#[tokio::test]
async fn rate_limit_with_retry_after_is_retried_then_answered() {
    let app = TestApp::start().await;
    app.ai.push_response(Scripted::rate_limited(1));
    let started = Instant::now();
    let (status, body) = app.process(&app.msg("lead-429", "hi", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!("reply to: hi"));
    let reqs = app.ai.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "retry-after: 1 was honoured: {gap:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    app.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let app = TestApp::start().await;
    app.ai.push_response(Scripted::server_error());
    app.ai.push_response(Scripted::server_error());
    let (status, body) = app.process(&app.msg("lead-500", "hi", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.ai.request_count(), 3);
    app.stop().await;
}

#[tokio::test]
async fn insufficient_quota_fails_at_once_with_an_error_postback() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.ai.push_response(Scripted::insufficient_quota());
    app.process(&app.msg("lead-q", "hi", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(10)).await;
    app.settle().await;
    assert_eq!(app.ai.request_count(), 1, "no retries for insufficient_quota");
    let p = &got[0].json;
    assert_eq!(p["success"], json!(false));
    assert_eq!(p["response"], json!(null));
    assert_eq!(p["error"]["code"], json!("insufficient_quota"));
    assert_eq!(p["messages_processed"], json!(1));
    crate::support::verify_signature(&app.tenant.postback_secret, &got[0]);
    app.stop().await;
}

#[tokio::test]
async fn a_definitive_ai_failure_is_502_for_sync_callers() {
    let app = TestApp::start().await;
    app.ai.push_response(Scripted::unauthorized());
    let (status, body) = app.process(&app.msg("lead-401", "hi", false)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["error"]["code"], json!("invalid_api_key"));
    assert_eq!(app.ai.request_count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn retries_are_bounded() {
    let app = TestApp::builder().env("LEADFLOW_AI_MAX_ATTEMPTS", "3").start().await;
    for _ in 0..5 {
        app.ai.push_response(Scripted::server_error());
    }
    let (status, body) = app.process(&app.msg("lead-down", "hi", false)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(app.ai.request_count(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_tenants_own_ai_key_and_base_url_win() {
    let app = TestApp::start().await;
    let other_ai = crate::support::FakeAi::start().await;
    let key = app.config().master_key.unwrap();
    leadflow_shared::db::tenants::set_ai_settings(
        &app.pool,
        &key,
        app.tenant.tenant_id,
        Some("sk-tenant"),
        Some(&other_ai.base_url),
    )
    .await
    .unwrap();
    let (status, _) = app.process(&app.msg("lead-own", "hi", false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.ai.request_count(), 0);
    let reqs = other_ai.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers.get("authorization").unwrap(), "Bearer sk-tenant");
    app.stop().await;
}

#[tokio::test]
async fn a_hung_provider_times_out_and_is_retried() {
    let app = TestApp::builder().env("LEADFLOW_AI_TIMEOUT", "1s").start().await;
    app.ai.push_response(Scripted::Hang);
    app.ai.push_response(Scripted::Reply("Olá! Posso ajudar?".into()));
    let (status, body) = app.process(&app.msg("lead-hang", "oi", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!("Olá! Posso ajudar?"));
    assert_eq!(app.ai.request_count(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_joins_a_failing_generation_still_gets_its_own_answer() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "max_wait_seconds": 30}))
        .await;
    app.ai.set_latency(Duration::from_millis(1200));
    app.ai.push_response(Scripted::insufficient_quota());
    app.process(&app.msg("lead-f", "first", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(5)).await;
    app.process(&app.msg("lead-f", "second", true)).await;
    let got = app.receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[0].json["success"], json!(false));
    assert_eq!(
        got[0].json["messages_processed"],
        json!(1),
        "the failure covers only what was tried"
    );
    assert_eq!(got[1].json["success"], json!(true));
    assert_eq!(got[1].json["messages_processed"], json!(1));
    assert_eq!(crate::support::last_user_turn(&app.ai.requests()[1].body), "second");
    app.stop().await;
}

#[tokio::test]
async fn the_operators_shared_key_has_allowed_models_and_a_token_cap_a_tenants_own_key_has_neither() {
    let app = TestApp::builder()
        .env("LEADFLOW_AI_ALLOWED_MODELS", "gpt-4o-mini, gpt-4.1-mini")
        .env("LEADFLOW_AI_MAX_TOKENS_CAP", "100")
        .start()
        .await;
    app.set_assistant(json!({"model": "gpt-4o", "max_tokens": 5000})).await;
    let (status, body) = app.process(&app.msg("lead-model", "oi", false)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], json!("ai_model_not_allowed"), "{body}");
    assert_eq!(app.ai.request_count(), 0, "nothing was sent on the shared key");

    app.set_assistant(json!({"model": "gpt-4o-mini"})).await;
    let (status, _) = app.process(&app.msg("lead-cap", "oi", false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.ai.requests()[0].body["max_tokens"], json!(100));

    // The tenant's own key: any model, its own max_tokens.
    let own = crate::support::FakeAi::start().await;
    let key = app.config().master_key.unwrap();
    leadflow_shared::db::tenants::set_ai_settings(
        &app.pool,
        &key,
        app.tenant.tenant_id,
        Some("sk-own"),
        Some(&own.base_url),
    )
    .await
    .unwrap();
    app.set_assistant(json!({"model": "gpt-4o"})).await;
    let (status, _) = app.process(&app.msg("lead-own-key", "oi", false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own.requests()[0].body["max_tokens"], json!(5000));
    app.stop().await;
}

#[tokio::test]
async fn the_operators_key_never_goes_to_a_base_url_the_tenant_chose() {
    let app = TestApp::start().await;
    let tenant_server = crate::support::FakeAi::start().await;
    let key = app.config().master_key.unwrap();
    leadflow_shared::db::tenants::set_ai_settings(
        &app.pool,
        &key,
        app.tenant.tenant_id,
        None,
        Some(&tenant_server.base_url),
    )
    .await
    .unwrap();
    let (status, _) = app.process(&app.msg("lead-base", "oi", false)).await;
    assert_eq!(status, StatusCode::OK);
    let reqs = tenant_server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].headers.get("authorization").is_none(), "{:?}", reqs[0].headers);
    assert_eq!(app.ai.request_count(), 0);
    app.stop().await;
}
