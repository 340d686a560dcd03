//! Google integration end to end against a fake Google speaking its wire formats:
//! consent and tokens, Calendar push channels (watch, pushes, sync with sync tokens),
//! renewal before expiry, and a revoked grant.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::fake_google::{FakeGoogle, GOOD_CODE};
use crate::support::receiver::Receiver;
use crate::support::{eventually, verify_signature, TestApp};

const CALENDAR: &str = "agenda.corretor@acmeimoveis.com.br";

async fn app_with(google: &FakeGoogle, extra: &[(&str, &str)]) -> TestApp {
    let mut b = TestApp::builder();
    for (k, v) in google.env() {
        b = b.env(k, &v);
    }
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.start().await
}

async fn callback(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(format!("{}/integrations/google/callback?{query}", app.base))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Consent through the fake: returns the integration id.
async fn connect(app: &TestApp) -> String {
    let (status, out) = app.post("/backend/integrations/google/auth-url", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let url = url::Url::parse(out["url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        q["redirect_uri"],
        "https://leadflow.example.com/integrations/google/callback"
    );
    assert_eq!(
        (q["access_type"].as_str(), q["response_type"].as_str()),
        ("offline", "code")
    );
    let state = out["state"].as_str().unwrap();
    assert_eq!(q["state"], state);
    let (status, out) = callback(app, &format!("code={GOOD_CODE}&state={state}")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out["integration"]["id"].as_str().unwrap().to_string()
}

async fn channels(app: &TestApp) -> Vec<Value> {
    let (status, out) = app.get("/backend/integrations/google/channels").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out["data"].as_array().unwrap().clone()
}

/// Starts a watch and waits for Google to have it: (channel id, token, resource id).
async fn watch(app: &TestApp, google: &FakeGoogle) -> (String, String, String) {
    let path = format!("/backend/integrations/google/calendars/{CALENDAR}/watch");
    let (status, ch) = app.post(&path, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ch}");
    assert_eq!(ch["status"], "pending");
    let id = ch["id"].as_str().unwrap().to_string();
    // Active once it has Google's resource id (a near-expiry channel may already be
    // replaced and stopped by the time it is looked at).
    let resource = eventually(Duration::from_secs(10), "the channel to be active", || async {
        channels(app)
            .await
            .into_iter()
            .find(|c| c["id"] == json!(id) && c["status"] != "pending")
            .and_then(|c| c["resource_id"].as_str().map(str::to_string))
    })
    .await;
    let call = google
        .calls("/events/watch")
        .into_iter()
        .find(|c| c.body["id"] == json!(id))
        .expect("Google got the watch");
    (id, call.body["token"].as_str().unwrap().to_string(), resource)
}

async fn push(app: &TestApp, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut req = app.http.post(format!("{}/webhooks/google/calendar", app.base));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn consent_stores_the_tokens_encrypted_and_never_shows_them() {
    let google = FakeGoogle::start().await;
    let app = app_with(&google, &[]).await;
    let id = connect(&app).await;
    let exchange = &google.calls("/token")[0];
    assert_eq!(exchange.body["grant_type"], "authorization_code");
    assert_eq!(exchange.body["code"], GOOD_CODE);
    assert_eq!(
        exchange.body["redirect_uri"],
        "https://leadflow.example.com/integrations/google/callback"
    );

    let resp = app
        .http
        .get(format!("{}/backend/integrations/tokens", app.base))
        .bearer_auth(app.key())
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["data"][0]["id"], json!(id));
    assert_eq!(list["data"][0]["status"], "active");
    assert_eq!(
        list["data"][0]["scopes"],
        "https://www.googleapis.com/auth/calendar.events"
    );
    assert!(!text.contains("ya29") && !text.contains("1//0g"), "{text}");
    let (access, refresh): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT access_token_enc, refresh_token_enc FROM integration_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let plain = |b: &[u8]| String::from_utf8_lossy(b).contains("ya29") || String::from_utf8_lossy(b).contains("1//0g");
    assert!(!plain(&access) && !plain(&refresh), "tokens are encrypted at rest");

    // A state is single use; Google's refusals are clear 4xx errors.
    let state = google.calls("/token").len(); // no new exchange below
    let (_, out) = app.post("/backend/integrations/google/auth-url", &json!({})).await;
    let s = out["state"].as_str().unwrap().to_string();
    let (status, out) = callback(&app, &format!("code=4/wrong&state={s}")).await;
    assert_eq!(
        (status, out["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("code"))
    );
    let (status, out) = callback(&app, &format!("code={GOOD_CODE}&state={s}")).await;
    assert_eq!(
        (status, out["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("state"))
    );
    let (status, out) = callback(&app, "error=access_denied&state=x").await;
    assert_eq!(
        (status, out["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("error"))
    );
    assert_eq!(
        google.calls("/token").len(),
        state + 1,
        "only the wrong code reached Google"
    );

    // Revoking forgets the tokens.
    let resp = app
        .http
        .delete(format!("{}/backend/integrations/tokens/{id}", app.base))
        .bearer_auth(app.key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, list) = app.get("/backend/integrations/tokens").await;
    assert_eq!(
        (status, list["data"][0]["status"].clone()),
        (StatusCode::OK, json!("revoked"))
    );
    let wiped: bool =
        sqlx::query_scalar("SELECT access_token_enc IS NULL AND refresh_token_enc IS NULL FROM integration_tokens")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(wiped);
}

#[tokio::test]
async fn pushes_are_verified_deduplicated_and_sync_the_calendar() {
    let google = FakeGoogle::start().await;
    let app = app_with(&google, &[]).await;
    connect(&app).await;
    let (id, token, resource) = watch(&app, &google).await;
    let call = &google.calls("/events/watch")[0];
    assert_eq!(
        call.path,
        "/calendar/v3/calendars/agenda.corretor%40acmeimoveis.com.br/events/watch"
    );
    assert_eq!(call.headers["authorization"], "Bearer ya29.a0AfB_access-1");
    assert_eq!(call.body["type"], "web_hook");
    assert_eq!(
        call.body["address"],
        "https://leadflow.example.com/webhooks/google/calendar"
    );

    // (token, resource, state, message number) of a push on this channel.
    let on = |token: &str, resource: &str, state: &str, n: &str| {
        [
            ("X-Goog-Channel-ID", id.clone()),
            ("X-Goog-Channel-Token", token.to_string()),
            ("X-Goog-Resource-ID", resource.to_string()),
            ("X-Goog-Resource-State", state.to_string()),
            ("X-Goog-Message-Number", n.to_string()),
        ]
    };
    let (status, _) = push(&app, &on("wrong-token", &resource, "exists", "2")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = push(&app, &on(&token, "someone-elses", "exists", "2")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        google.calls("/events").iter().all(|c| c.method != "GET"),
        "nothing synced yet"
    );

    // The channel's first message: a full sync, since the calendar never was.
    let (status, out) = push(&app, &on(&token, &resource, "sync", "1")).await;
    assert_eq!((status, out["sync"].clone()), (StatusCode::OK, json!(true)));
    let events = || async {
        sqlx::query_as::<_, (String, String)>("SELECT event_id, status FROM calendar_events ORDER BY event_id")
            .fetch_all(&app.pool)
            .await
            .unwrap()
    };
    eventually(Duration::from_secs(10), "the full sync", || async {
        (events().await.len() == 2).then_some(())
    })
    .await;
    let lists = |google: &FakeGoogle| {
        google
            .calls("/events")
            .into_iter()
            .filter(|c| c.method == "GET")
            .map(|c| c.query)
            .collect::<Vec<_>>()
    };
    assert!(!lists(&google)[0].contains("syncToken"));

    // A change: only what changed since the stored token.
    push(&app, &on(&token, &resource, "exists", "2")).await;
    eventually(Duration::from_secs(10), "the incremental sync", || async {
        (events().await.len() == 3).then_some(())
    })
    .await;
    assert!(lists(&google)[1].contains("syncToken=sync-1"), "{:?}", lists(&google));
    // Redelivered and stale pushes are acknowledged and dropped.
    let (status, out) = push(&app, &on(&token, &resource, "exists", "2")).await;
    assert_eq!((status, out["ignored"].is_string()), (StatusCode::OK, true));
    let (status, out) = push(&app, &on(&token, &resource, "exists", "1")).await;
    assert_eq!(
        (status, out["ignored"].clone()),
        (StatusCode::OK, json!("duplicate or stale message number"))
    );
    // An expired sync token means a full sync.
    google.expire_sync_token("sync-2");
    push(&app, &on(&token, &resource, "exists", "7")).await;
    let full: i32 = eventually(Duration::from_secs(10), "the full resync", || async {
        let n: i32 = sqlx::query_scalar("SELECT full_syncs FROM calendar_syncs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(full, 2);
    let q = lists(&google);
    assert_eq!(q.len(), 4, "sync, change, 410, full again: {q:?}");
    assert!(
        q[2].contains("syncToken=sync-2") && !q[3].contains("syncToken"),
        "{q:?}"
    );
    // An unknown channel is acknowledged (Google would retry anything else) and ignored.
    let unknown = [
        ("X-Goog-Channel-ID", "0f6d1c2b-8e4a-4f7b-9c3d-5a6b7c8d9e0f".to_string()),
        ("X-Goog-Message-Number", "1".to_string()),
    ];
    let (status, out) = push(&app, &unknown).await;
    assert_eq!(
        (status, out["ignored"].clone()),
        (StatusCode::OK, json!("unknown channel"))
    );
}

#[tokio::test]
async fn a_channel_near_expiry_is_replaced_once_after_a_failed_attempt_and_the_old_one_stopped() {
    let google = FakeGoogle::start().await;
    let hooks = Receiver::start().await;
    let app = app_with(&google, &[("LEADFLOW_CALENDAR_RENEW_INTERVAL", "300ms")]).await;
    let (status, out) = app
        .post(
            "/backend/notification-configs",
            &json!({"events": ["calendar.renewal_failed"], "target": "webhook", "url": hooks.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    // Access tokens that live 30 s are always refreshed before use (a minute's margin).
    google.set_expires_in(30);
    connect(&app).await;
    google.push_watch_ttl(23 * 3600 * 1000);
    // The first renewal fails: scripted before the watch, since renewals may start the
    // moment it is active.
    google.fail_watch_call(2, 503);
    let (old, _, old_resource) = watch(&app, &google).await;

    let new = eventually(Duration::from_secs(20), "the replacement", || async {
        channels(&app)
            .await
            .into_iter()
            .find(|c| c["replaces"] == json!(old) && c["status"] == "active")
    })
    .await;
    let stops = eventually(Duration::from_secs(10), "the old channel stopped", || async {
        let stops = google.calls("/channels/stop");
        (!stops.is_empty()).then_some(stops)
    })
    .await;
    assert_eq!(stops[0].body, json!({"id": old, "resourceId": old_resource}));
    let got = hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json["type"], "calendar.renewal_failed");
    assert_eq!(got[0].json["data"]["channel_id"], json!(old));
    verify_signature(&app.tenant.postback_secret, &got[0]);

    // Many more ticks: nothing is renewed twice.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        google.calls("/events/watch").len(),
        3,
        "the watch, the failed renewal, the renewal"
    );
    assert_eq!(google.calls("/channels/stop").len(), 1);
    let all = channels(&app).await;
    let old_row = all.iter().find(|c| c["id"] == json!(old)).unwrap();
    assert_eq!(
        (old_row["status"].clone(), old_row["replaced_by"].clone()),
        (json!("stopped"), new["id"].clone())
    );
    assert_eq!(old_row["renew_attempts"], 1);
    assert_eq!(all.iter().filter(|c| c["status"] == "active").count(), 1);
    // Every Google call used a fresh token from the refresh grant.
    let refreshes = google
        .calls("/token")
        .iter()
        .filter(|c| c.body["grant_type"] == "refresh_token")
        .count();
    assert!(refreshes >= 3, "{refreshes} refreshes");
}

#[tokio::test]
async fn a_revoked_grant_needs_reauth_stops_the_channels_and_notifies() {
    let google = FakeGoogle::start().await;
    let hooks = Receiver::start().await;
    let app = app_with(&google, &[]).await;
    let (status, out) = app
        .post(
            "/backend/notification-configs",
            &json!({"events": ["integration.needs_reauth"], "target": "webhook", "url": hooks.url}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    google.set_expires_in(30);
    let integration = connect(&app).await;
    let (id, token, resource) = watch(&app, &google).await;

    google.set_refresh_fails(true);
    let headers = [
        ("X-Goog-Channel-ID", id.clone()),
        ("X-Goog-Channel-Token", token.clone()),
        ("X-Goog-Resource-ID", resource.clone()),
        ("X-Goog-Resource-State", "exists".to_string()),
        ("X-Goog-Message-Number", "5".to_string()),
    ];
    assert_eq!(push(&app, &headers).await.0, StatusCode::OK);
    let got = hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json["type"], "integration.needs_reauth");
    assert_eq!(got[0].json["data"]["integration_id"], json!(integration));
    assert_eq!(got[0].json["data"]["channels_stopped"], json!([id]));
    verify_signature(&app.tenant.postback_secret, &got[0]);
    let (_, list) = app.get("/backend/integrations/tokens").await;
    assert_eq!(list["data"][0]["status"], "needs_reauth");
    assert_eq!(channels(&app).await[0]["status"], "stopped");
    // Its pushes are ignored from now on, and it cannot be watched again until consent.
    let mut later = headers.clone();
    later[4] = ("X-Goog-Message-Number", "6".to_string());
    let (_, out) = push(&app, &later).await;
    assert_eq!(out["ignored"], "the channel is stopped");
    let (status, out) = app
        .post(
            &format!("/backend/integrations/google/calendars/{CALENDAR}/watch"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, out["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("integration"))
    );
    // Consent again: the same integration is active again.
    google.set_refresh_fails(false);
    assert_eq!(connect(&app).await, integration);
}

#[tokio::test]
async fn a_token_endpoint_answering_500_is_retried_not_taken_for_a_revoked_grant() {
    let google = FakeGoogle::start().await;
    let app = app_with(&google, &[]).await;
    google.set_expires_in(30);
    connect(&app).await;
    // The refresh before the watch fails once with a 500: the watch is tried again.
    google.push_token_failure(500);
    let (id, _, _) = watch(&app, &google).await;
    let refreshes: Vec<_> = google
        .calls("/token")
        .into_iter()
        .filter(|c| c.body["grant_type"] == "refresh_token")
        .collect();
    assert!(refreshes.len() >= 2, "the failed refresh and the one that worked");
    let (_, list) = app.get("/backend/integrations/tokens").await;
    assert_eq!(list["data"][0]["status"], "active");
    let ch = channels(&app).await.into_iter().find(|c| c["id"] == json!(id)).unwrap();
    assert_eq!(ch["status"], "active");
}

#[tokio::test]
async fn push_tokens_are_encrypted_at_rest() {
    let google = FakeGoogle::start().await;
    let app = app_with(&google, &[]).await;
    connect(&app).await;
    let (id, token, _) = watch(&app, &google).await;
    let (plain, sealed): (Option<String>, Vec<u8>) =
        sqlx::query_as("SELECT token, token_enc FROM calendar_channels WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(plain, None);
    assert!(!token.is_empty());
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&token),
        "the token is not stored readable"
    );
    app.stop().await;
}

/// A watch Google refuses is lost for good: the operator sees it among the console's
/// failures (kind `calendar`), and a retry watches the calendar again from a new channel.
#[tokio::test]
async fn a_refused_watch_is_an_operator_failure_that_a_retry_watches_again() {
    const TOKEN: &str = "operator-token-for-the-calendar-failures";
    let google = FakeGoogle::start().await;
    let app = app_with(&google, &[("LEADFLOW_ADMIN_TOKEN", TOKEN)]).await;
    let admin = |path: String| {
        let req = app.http.request(
            if path.contains("/retry") || path.contains("/discard") {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            },
            format!("{}{path}", app.base),
        );
        async move {
            let resp = req.bearer_auth(TOKEN).send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    connect(&app).await;
    google.fail_watch_call(1, 400);
    let path = format!("/backend/integrations/google/calendars/{CALENDAR}/watch");
    let (status, ch) = app.post(&path, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ch}");
    let failed = ch["id"].as_str().unwrap().to_string();

    let listed = eventually(Duration::from_secs(10), "the calendar failure", || async {
        let (status, body) = admin(format!(
            "/admin/api/failures?kind=calendar&tenant_id={}",
            app.tenant.tenant_id
        ))
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(listed["id"], json!(failed));
    assert_eq!(listed["kind"], "calendar");
    assert_eq!(listed["error_code"], "watch_failed");
    assert!(listed["message"].as_str().unwrap().contains("400"), "{listed}");
    assert_eq!(channels(&app).await[0]["status"], "failed", "the tenant sees it too");

    let (status, out) = admin(format!("/admin/api/failures/calendar/{failed}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let new = out["retried"]["channel_id"].as_str().unwrap().to_string();
    assert_ne!(new, failed, "Google's channel ids are not reused");
    eventually(Duration::from_secs(10), "the new channel active", || async {
        channels(&app)
            .await
            .into_iter()
            .find(|c| c["id"] == json!(new) && c["status"] == "active")
    })
    .await;
    let watches = google.calls("/events/watch");
    assert_eq!(watches.len(), 2, "the refused watch and the retried one");
    assert_eq!(watches[1].body["id"], json!(new));
    let (_, body) = admin(format!(
        "/admin/api/failures?kind=calendar&tenant_id={}",
        app.tenant.tenant_id
    ))
    .await;
    assert_eq!(body["data"], json!([]), "retried: off the list");
    let (status, _) = admin(format!("/admin/api/failures/calendar/{failed}/retry")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a failure is retried once");
    app.stop().await;
}
