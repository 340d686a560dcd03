//! The operator console's API (`/admin/api/*`): an operator token, not a tenant's key;
//! queues with their backlog (and pausing one), everything that failed for good across
//! tenants and kinds — listed, paged, retried (one by one or in bulk) and discarded —,
//! tenants with their counts, channels by connection.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::fake_ai::Scripted;
use crate::support::{eventually, TestApp};

const TOKEN: &str = "operator-token-for-the-console-tests";

async fn console() -> TestApp {
    TestApp::builder().env("LEADFLOW_ADMIN_TOKEN", TOKEN).start().await
}

async fn admin(app: &TestApp, method: Method, path: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn failures(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = admin(app, Method::GET, &format!("/admin/api/failures{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_console_is_off_without_a_token_and_refuses_a_wrong_one() {
    let off = TestApp::start().await;
    let (status, _) = admin(&off, Method::GET, "/admin/api/queues").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no LEADFLOW_ADMIN_TOKEN: no console");
    off.stop().await;

    let app = console().await;
    for auth in [None, Some(app.key().to_owned()), Some(format!("{TOKEN}x"))] {
        let mut req = app.http.get(format!("{}/admin/api/queues", app.base));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "a tenant key is not an operator's"
        );
    }
    let (status, body) = admin(&app, Method::GET, "/admin/api/queues").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "flush",
            "ai",
            "media",
            "postback",
            "inbound",
            "send",
            "scheduled",
            "mail",
            "calendar"
        ]
    );
    assert!(body["data"][0]["workers"].as_u64().unwrap() >= 1, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn failed_postbacks_are_listed_paged_retried_and_discarded() {
    let app = console().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.receiver.set_default_status(500);
    for lead in ["lead-f1", "lead-f2", "lead-f3"] {
        app.process(&app.msg(lead, "oi", true)).await;
    }
    let listed = eventually(Duration::from_secs(30), "three exhausted postbacks", || async {
        let items = failures(&app, "?kind=postback").await;
        (items.len() == 3).then_some(items)
    })
    .await;
    let f = &listed[0];
    assert_eq!(f["kind"], json!("postback"));
    assert_eq!(f["tenant_id"], json!(app.tenant.tenant_id));
    assert_eq!(f["attempts"], json!(4), "{f}");
    assert!(f["message"].as_str().unwrap().contains("500"), "{f}");
    assert!(f["lead_id"].as_str().unwrap().starts_with("lead-f"));
    // Paged: newest first, a cursor to the next page, the same three in all.
    let (_, page1) = admin(&app, Method::GET, "/admin/api/failures?kind=postback&limit=2").await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = admin(
        &app,
        Method::GET,
        &format!("/admin/api/failures?kind=postback&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next_cursor"], Value::Null);
    let mut ids: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["data"].as_array().unwrap())
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // Filters that name a bad value are a 422 naming the field.
    let (status, body) = admin(&app, Method::GET, "/admin/api/failures?kind=everything").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], json!("kind"));
    let search = failures(&app, "?q=lead-f2").await;
    assert_eq!(search.len(), 1, "q matches the lead");

    // The receiver is back: one retried alone, one discarded, the last one in bulk.
    app.receiver.set_default_status(200);
    let (status, body) = admin(
        &app,
        Method::POST,
        &format!("/admin/api/failures/postback/{}/retry", ids[0]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.receiver.wait_for(1, Duration::from_secs(15)).await;
    let (status, _) = admin(
        &app,
        Method::POST,
        &format!("/admin/api/failures/postback/{}/retry", ids[0]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "delivered: nothing left to retry");
    let (status, _) = admin(
        &app,
        Method::POST,
        &format!("/admin/api/failures/postback/{}/discard", ids[1]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin(&app, Method::POST, "/admin/api/failures/retry?kind=postback").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["retried"], json!(1), "{body}");
    app.receiver.wait_for(2, Duration::from_secs(15)).await;
    app.settle().await;
    assert!(
        failures(&app, "").await.is_empty(),
        "nothing failed is left on the list"
    );
    let discarded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE discarded_at IS NOT NULL AND status = 'failed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(discarded, 1, "a discarded failure is kept, marked");
    assert_eq!(app.receiver.successful().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_burst_is_retried_as_a_new_burst_and_answered_once() {
    let app = console().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.ai.push_response(Scripted::insufficient_quota());
    app.process(&app.msg("lead-quota", "quanto custa?", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json["success"], json!(false));
    app.settle().await;
    let listed = failures(&app, "?kind=burst").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["error_code"], json!("insufficient_quota"));
    assert_eq!(listed[0]["lead_id"], json!("lead-quota"));
    let id = listed[0]["id"].as_str().unwrap().to_owned();

    let (status, body) = admin(&app, Method::POST, &format!("/admin/api/failures/burst/{id}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let new_burst = body["retried"]["burst_id"].as_str().unwrap().to_owned();
    assert_ne!(new_burst, id);
    let got = app.receiver.wait_for(2, Duration::from_secs(15)).await;
    let answer = got
        .iter()
        .find(|d| d.json["success"] == json!(true))
        .expect("the retry's reply");
    assert_eq!(answer.json["response"], json!("reply to: quanto custa?"));
    assert_ne!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    let (status, _) = admin(&app, Method::POST, &format!("/admin/api/failures/burst/{id}/retry")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a retried failure is not retried twice");
    app.settle().await;
    let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to_burst IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(replies, 1, "one reply for the lead's message");
    assert_eq!(app.receiver.deliveries().len(), 2, "the error postback, then the reply");
    assert!(failures(&app, "").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn queues_pause_and_resume_and_tenants_and_channels_are_listed() {
    let app = console().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let (status, _) = admin(&app, Method::POST, "/admin/api/queues/ai/pause").await;
    assert_eq!(status, StatusCode::OK);
    app.process(&app.msg("lead-paused", "oi", true)).await;
    let waiting = eventually(
        Duration::from_secs(10),
        "the AI job waiting in the paused queue",
        || async {
            let (_, body) = admin(&app, Method::GET, "/admin/api/queues").await;
            let ai = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["queue"] == "ai")
                .unwrap()
                .clone();
            (ai["paused"] == json!(true) && ai["waiting"].as_u64() == Some(1)).then_some(ai)
        },
    )
    .await;
    assert!(waiting["oldest_waiting_seconds"].as_f64().unwrap() >= 0.0, "{waiting}");
    assert!(app.receiver.deliveries().is_empty());
    let (status, _) = admin(&app, Method::POST, "/admin/api/queues/ai/resume").await;
    assert_eq!(status, StatusCode::OK);
    app.receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        admin(&app, Method::POST, "/admin/api/queues/nope/pause").await.0,
        StatusCode::NOT_FOUND
    );

    crate::official::create_gupshup_channel(&app, "http://127.0.0.1:9").await;
    let (status, body) = admin(&app, Method::GET, "/admin/api/channels?connection=unknown").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["data"][0]["provider"], json!("gupshup"));
    let (_, none) = admin(&app, Method::GET, "/admin/api/channels?connection=disconnected").await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let (status, body) = admin(&app, Method::GET, "/admin/api/channels?connection=sideways").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], json!("connection"));

    let (status, body) = admin(&app, Method::GET, "/admin/api/tenants").await;
    assert_eq!(status, StatusCode::OK);
    let me = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(app.tenant.tenant_id))
        .unwrap()
        .clone();
    assert_eq!(me["leads"], json!(1), "{me}");
    assert_eq!(me["channels"], json!(1));
    assert_eq!(me["messages_24h"], json!(2), "the message and its reply");
    assert_eq!(me["disabled"], json!(false));
    let t = app.tenant.tenant_id;
    let (status, _) = admin(&app, Method::POST, &format!("/admin/api/tenants/{t}/disable")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.process(&app.msg("lead-after", "oi", true)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled tenant's key stops working"
    );
    let (status, _) = admin(&app, Method::POST, &format!("/admin/api/tenants/{t}/enable")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.process(&app.msg("lead-after", "oi", true)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.receiver.wait_for(2, Duration::from_secs(15)).await;
    app.stop().await;
}

/// The same from the command line, against PostgreSQL and Redis directly.
#[tokio::test]
async fn the_cli_lists_queues_and_failures_and_retries_one() {
    let app = console().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.ai.push_response(Scripted::insufficient_quota());
    app.process(&app.msg("lead-cli", "oi", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(15)).await;
    app.settle().await;
    let run = |args: &[&str]| {
        let out = app
            .leadflow_command()
            .args(args)
            .env("LEADFLOW_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = run(&["failures", "list", "--kind", "burst"]);
    let lines: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert_eq!(lines[0]["error_code"], json!("insufficient_quota"));
    let id = lines[0]["id"].as_str().unwrap().to_owned();
    run(&["failures", "retry", "burst", &id]);
    let got = app.receiver.wait_for(2, Duration::from_secs(15)).await;
    assert!(got.iter().any(|d| d.json["success"] == json!(true)));
    assert!(run(&["failures", "list"]).trim().is_empty(), "nothing failed is left");
    let table = run(&["queues"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 10, "a header and nine queues:\n{table}");
    assert!(rows[0].starts_with("queue") && rows[1].starts_with("flush"), "{table}");
    app.settle().await;
    app.stop().await;
}

/// The console's page in a real browser: sign in, see a failed postback, press retry,
/// see it gone and the postback delivered; usable on a phone's width. With
/// `LEADFLOW_CONSOLE_SCREENSHOT=path` it also saves the page as the README shows it.
#[tokio::test]
async fn the_console_page_signs_in_shows_a_failed_postback_and_retries_it() {
    use crate::support::browser::Browser;
    let app = console().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.receiver.set_default_status(500);
    app.process(&app.msg("lead-browser", "oi", true)).await;
    eventually(Duration::from_secs(30), "the exhausted postback", || async {
        (failures(&app, "?kind=postback").await.len() == 1).then_some(())
    })
    .await;
    app.receiver.set_default_status(200);

    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{}/admin", app.base)).await;
    let field = browser.wait_for("#token").await;
    browser.type_into(&field, "not-the-token-at-all").await;
    browser.click(&browser.wait_for("#sign-in button").await).await;
    let error = browser.wait_for("#sign-in-error").await;
    eventually(Duration::from_secs(10), "the refusal", || async {
        browser.text(&error).await.contains("not valid").then_some(())
    })
    .await;
    let field = browser.wait_for("#token").await;
    browser.type_into(&field, TOKEN).await;
    browser.click(&browser.wait_for("#sign-in button").await).await;
    let retry = browser
        .wait_for(r#"#failures tr[data-kind="postback"] button.retry"#)
        .await;
    let row = browser
        .eval(r#"return document.querySelector('#failures tr[data-kind="postback"]').innerText"#)
        .await;
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains("lead-browser") && row.contains("500"), "{row}");
    browser.wait_for(r#"#queues tr[data-queue="postback"]"#).await;
    if let Ok(path) = std::env::var("LEADFLOW_CONSOLE_SCREENSHOT") {
        browser.resize(1280, 1000).await;
        std::fs::write(path, browser.screenshot().await).unwrap();
    }
    browser.click(&retry).await;
    let flash = browser.wait_for("#flash").await;
    eventually(Duration::from_secs(10), "the retry confirmed", || async {
        browser
            .text(&flash)
            .await
            .contains("Retried the postback for lead-browser")
            .then_some(())
    })
    .await;
    let got = app.receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json["lead_id"], json!("lead-browser"));
    eventually(Duration::from_secs(15), "the row gone from the page", || async {
        browser.find(r#"#failures tr[data-kind]"#).await.is_none().then_some(())
    })
    .await;
    // A phone's width: nothing wider than the screen but the tables' own scroll boxes.
    browser.resize(390, 844).await;
    let fits = browser
        .eval("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, json!(true), "the page fits a phone's width");
    browser.quit().await;
    app.settle().await;
    app.stop().await;
}
