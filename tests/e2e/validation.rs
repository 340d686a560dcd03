//! Bad input: a clear 4xx naming the field; keys and tenants.

use leadflow_shared::db::tenants::TenantKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::TestApp;

#[tokio::test]
async fn every_malformed_field_is_a_422_naming_it() {
    let app = TestApp::start().await;
    let base = app.msg("lead-v", "hi", true);
    let with = |f: &str, v: Value| {
        let mut m = base.clone();
        m[f] = v;
        m
    };
    let without = |f: &str| {
        let mut m = base.clone();
        m.as_object_mut().unwrap().remove(f);
        m
    };
    let cases: Vec<(&str, Value)> = vec![
        ("tenant_id", without("tenant_id")),
        ("tenant_id", with("tenant_id", json!("not-a-uuid"))),
        ("tenant_id", with("tenant_id", json!(42))),
        ("lead_id", without("lead_id")),
        ("lead_id", with("lead_id", json!(""))),
        ("lead_id", with("lead_id", json!("x".repeat(300)))),
        ("lead_id", with("lead_id", json!(7))),
        ("role", without("role")),
        ("role", with("role", json!("bot"))),
        ("content", without("content")),
        ("content", with("content", json!(""))),
        ("content", with("content", json!(["a"]))),
        ("message_type", without("message_type")),
        ("message_type", with("message_type", json!("video"))),
        ("url", with("message_type", json!("image"))),
        ("url", {
            let mut m = with("message_type", json!("audio"));
            m["url"] = json!("ftp://example.com/a.ogg");
            m
        }),
        ("url", {
            let mut m = with("message_type", json!("pdf"));
            m["url"] = json!("not a url");
            m
        }),
        ("debounce", with("debounce", json!("yes"))),
        ("postback_url", without("postback_url")),
        ("postback_url", with("postback_url", json!("javascript:alert(1)"))),
        ("postback_url", with("postback_url", json!(12))),
        ("message_id", with("message_id", json!(""))),
        ("message_id", with("message_id", json!({"id": 1}))),
        ("assistant_id", with("assistant_id", json!("nope"))),
        ("assistant_id", with("assistant_id", json!(uuid::Uuid::new_v4()))),
    ];
    for (field, body) in cases {
        let (status, resp) = app.process(&body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {resp}");
        assert_eq!(resp["success"], json!(false), "{field}: {resp}");
        assert_eq!(resp["error"]["field"], json!(field), "{resp}");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(resp["error"]["code"], json!("invalid_field"));
    }
    // Not JSON at all, and the wrong JSON shape.
    for raw in ["{not json", "[1,2]"] {
        let r = app
            .http
            .post(format!("{}/ai/process", app.base))
            .bearer_auth(app.key())
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], json!("body"));
    }
    // Nothing malformed was stored.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::builder().env("LEADFLOW_MAX_BODY_BYTES", "2048").start().await;
    let (status, body) = app.process(&app.msg("lead-big", &"x".repeat(4096), true)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], json!("payload_too_large"));
    app.stop().await;
}

#[tokio::test]
async fn keys_and_tenants() {
    let app = TestApp::start().await;
    let m = app.msg("lead-k", "hi", true);
    let (status, body) = app.post_as("lf_wrong", "/ai/process", &m).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let r = app
        .http
        .post(format!("{}/ai/process", app.base))
        .json(&m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no key at all");

    // Another (unrelated) tenant's key may not act for this tenant.
    let stranger = app.other_tenant(TenantKind::Client, None).await;
    let (status, body) = app.post_as(&stranger.api_key, "/ai/process", &m).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // …and an id that does not exist looks exactly the same.
    let mut ghost = m.clone();
    ghost["tenant_id"] = json!(uuid::Uuid::new_v4());
    let (status2, body2) = app.post_as(&stranger.api_key, "/ai/process", &ghost).await;
    assert_eq!(status2, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], body2["error"]);

    // The agency (the app's tenant) acts for its client; the client not for the agency.
    let client = app.other_tenant(TenantKind::Client, Some(app.tenant.tenant_id)).await;
    let mut for_client = app.msg("lead-k", "hi from the agency", false);
    for_client["tenant_id"] = json!(client.tenant_id);
    let (status, body) = app.process(&for_client).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!("reply to: hi from the agency"));
    let (status, _) = app
        .post_as(&client.api_key, "/ai/process", &app.msg("lead-k", "hi", false))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Leads are scoped by tenant: the same lead_id under two tenants is two leads.
    let (_, own) = app.get("/backend/leads/lead-k/messages").await;
    let (_, theirs) = app
        .get(&format!(
            "/backend/leads/lead-k/messages?tenant_id={}",
            client.tenant_id
        ))
        .await;
    assert_eq!(
        own["data"].as_array().map(Vec::len),
        None,
        "no messages for lead-k under the agency: {own}"
    );
    assert_eq!(theirs["data"].as_array().unwrap().len(), 2);
    // A stranger cannot read the client's lead, nor learn it exists.
    let r = app
        .http
        .get(format!(
            "{}/backend/leads/lead-k/messages?tenant_id={}",
            app.base, client.tenant_id
        ))
        .bearer_auth(&stranger.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429() {
    let app = TestApp::builder().env("LEADFLOW_TENANT_RATE_LIMIT", "5").start().await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let (s, _) = app.process(&app.msg(&format!("lead-rl-{i}"), "hi", true)).await;
        statuses.push(s);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::ACCEPTED));
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_are_shared_by_every_api_process_and_answer_retry_after() {
    let app = TestApp::builder()
        .env("LEADFLOW_TENANT_RATE_LIMIT", "5")
        .env("LEADFLOW_BACKEND_RATE_LIMIT", "5")
        .start()
        .await;
    // A second API process of the same install (same PostgreSQL, same Redis).
    let second = leadflow::start(app.config(), leadflow::Roles::api_only())
        .await
        .unwrap();
    let bases = [app.base.clone(), format!("http://{}", second.http_addr.unwrap())];
    let send = |i: usize, path: &'static str| {
        let base = bases[i % 2].clone();
        let body = app.msg(&format!("lead-shared-{i}"), "hi", true);
        let http = app.http.clone();
        let key = app.key().to_string();
        async move {
            let req = if path == "/ai/process" {
                http.post(format!("{base}{path}")).json(&body)
            } else {
                http.get(format!("{base}{path}"))
            };
            let resp = req.bearer_auth(key).send().await.unwrap();
            (resp.status(), resp.headers().get("retry-after").cloned())
        }
    };
    for path in ["/ai/process", "/backend/assistants"] {
        let answers = futures::future::join_all((0..30).map(|i| send(i, path))).await;
        let ok = answers.iter().filter(|(s, _)| s.is_success()).count();
        // One second's window, or two if the burst straddles a boundary; two processes
        // with their own buckets would have let 20 through.
        assert!((5..=10).contains(&ok), "{path}: {ok} of 30 accepted");
        let limited: Vec<_> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        assert_eq!(limited.len(), 30 - ok, "{path}");
        assert!(
            limited
                .iter()
                .all(|(_, after)| after.as_ref().is_some_and(|v| v == "1")),
            "{path}: Retry-After"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    second.shutdown().await;
    app.stop().await;
}
