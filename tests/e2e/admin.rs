//! Assistants CRUD and its validation.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn assistants_can_be_listed_created_read_and_patched() {
    let app = TestApp::start().await;
    let (status, list) = app.get("/backend/assistants").await;
    assert_eq!(status, StatusCode::OK);
    let items = list["data"].as_array().unwrap();
    assert_eq!(items.len(), 1, "a new tenant gets a default assistant");
    assert_eq!(items[0]["is_default"], json!(true));

    let (status, created) = app
        .post(
            "/backend/assistants",
            &json!({"name": "Night shift", "model": "gpt-4o", "system_prompt": "Be brief.", "temperature": 0.2,
                    "max_tokens": 300, "debounce_seconds": 2.5, "max_wait_seconds": 20, "history_limit": 10,
                    "human_pause_minutes": 30, "is_default": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["debounce_seconds"], json!(2.5));
    // Media settings default to what works with any OpenAI-compatible provider.
    assert_eq!(created["transcription_model"], json!("whisper-1"));
    assert_eq!(created["transcription_language"], json!(""));
    assert_eq!(created["image_detail"], json!("auto"));
    assert_eq!(created["image_inline"], json!(true));
    assert_eq!(created["pdf_as_file"], json!(false));
    let id = created["id"].as_str().unwrap().to_string();
    let (_, list) = app.get("/backend/assistants").await;
    let defaults: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["is_default"] == json!(true))
        .collect();
    assert_eq!(defaults.len(), 1, "one default per tenant");
    assert_eq!(defaults[0]["id"], json!(id));

    let (status, patched) = app
        .patch(&format!("/backend/assistants/{id}"), &json!({"temperature": 1.1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["temperature"], json!(1.1));
    assert_eq!(
        patched["name"],
        json!("Night shift"),
        "a PATCH keeps what it does not name"
    );

    // The explicit assistant answers when named in /ai/process.
    let mut m = app.msg("lead-a", "hi", false);
    m["assistant_id"] = json!(id);
    app.process(&m).await;
    assert_eq!(app.ai.requests()[0].body["model"], json!("gpt-4o"));

    let (status, _) = app.get(&format!("/backend/assistants/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn assistant_fields_are_validated() {
    let app = TestApp::start().await;
    let cases = [
        ("name", json!({"model": "x"})),
        ("name", json!({"name": ""})),
        ("temperature", json!({"name": "a", "temperature": 3})),
        ("temperature", json!({"name": "a", "temperature": "hot"})),
        ("max_tokens", json!({"name": "a", "max_tokens": 0})),
        ("max_tokens", json!({"name": "a", "max_tokens": 1.5})),
        ("debounce_seconds", json!({"name": "a", "debounce_seconds": -1})),
        (
            "max_wait_seconds",
            json!({"name": "a", "debounce_seconds": 10, "max_wait_seconds": 5}),
        ),
        ("history_limit", json!({"name": "a", "history_limit": -3})),
        (
            "human_pause_minutes",
            json!({"name": "a", "human_pause_minutes": "soon"}),
        ),
        ("is_default", json!({"name": "a", "is_default": "yes"})),
        ("transcription_model", json!({"name": "a", "transcription_model": ""})),
        (
            "transcription_language",
            json!({"name": "a", "transcription_language": "portuguese"}),
        ),
        ("transcription_prompt", json!({"name": "a", "transcription_prompt": 7})),
        ("image_detail", json!({"name": "a", "image_detail": "ultra"})),
        ("image_inline", json!({"name": "a", "image_inline": "no"})),
        ("pdf_as_file", json!({"name": "a", "pdf_as_file": 1})),
    ];
    for (field, body) in cases {
        let (status, resp) = app.post("/backend/assistants", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {resp}");
        assert_eq!(resp["error"]["field"], json!(field), "{resp}");
    }
    let (status, resp) = app
        .patch(
            &format!("/backend/assistants/{}", app.tenant.assistant_id),
            &json!({"max_wait_seconds": 0.5}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], json!("max_wait_seconds"));
    app.stop().await;
}
