//! Channels, departments and operators: CRUD, validation that names the field,
//! credentials that are stored encrypted and only ever shown masked, and agency/client
//! isolation both ways.

use leadflow_shared::db::tenants::TenantKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestApp;

const TOKEN: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F";

fn zapi(name: &str) -> Value {
    json!({"name": name, "type": "whatsapp", "provider": "z-api",
           "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775", "instance_token": TOKEN,
                           "client_token": "Fa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6S"}})
}

#[tokio::test]
async fn channels_departments_and_users_round_trip_with_masked_credentials() {
    let app = TestApp::start().await;
    let (status, dept) = app.post("/backend/departments", &json!({"name": "Vendas"})).await;
    assert_eq!(status, StatusCode::CREATED, "{dept}");
    let (status, user) = app
        .post(
            "/backend/users",
            &json!({"name": "Ana Lima", "email": "ana@acme.com.br", "department_id": dept["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["department_id"], dept["id"]);

    let mut body = zapi("WhatsApp vendas");
    body["assistant_id"] = json!(app.tenant.assistant_id);
    body["department_id"] = dept["id"].clone();
    let (status, ch) = app.post("/backend/channels", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    assert_eq!(ch["type"], json!("whatsapp"));
    assert_eq!(ch["provider"], json!("z-api"));
    assert_eq!(ch["status"], json!("active"));
    assert_eq!(ch["credentials"]["instance_token"], json!("…1E0F"));
    assert!(!ch.to_string().contains(TOKEN), "the token never comes back: {ch}");
    let id = ch["id"].as_str().unwrap().to_string();
    assert!(ch["webhook_path"]
        .as_str()
        .unwrap()
        .starts_with(&format!("/webhooks/{id}?token=")));
    // At rest it is ciphertext.
    let enc: Vec<u8> = sqlx::query_scalar("SELECT credentials_enc FROM channels")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!enc.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));

    // A PATCH of one credential keeps the others.
    let (status, ch) = app
        .patch(
            &format!("/backend/channels/{id}"),
            &json!({"name": "WhatsApp comercial", "credentials": {"instance_token": "0123456789abcdef0123"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    assert_eq!(ch["name"], json!("WhatsApp comercial"));
    assert_eq!(ch["credentials"]["instance_token"], json!("…0123"));
    assert_eq!(ch["credentials"]["instance_id"], json!("…2775"));
    let (_, list) = app.get("/backend/channels").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let (status, _) = app
        .send_as(app.key(), Method::DELETE, &format!("/backend/channels/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/backend/channels/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/backend/channels").await;
    assert_eq!(list["data"], json!([]));

    let uid = user["id"].as_str().unwrap();
    let (status, patched) = app
        .patch(&format!("/backend/users/{uid}"), &json!({"department_id": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["department_id"], Value::Null);
    assert_eq!(patched["email"], json!("ana@acme.com.br"));
    let (_, users) = app.get("/backend/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn channel_and_user_fields_are_validated() {
    let app = TestApp::start().await;
    let stranger = app.other_tenant(TenantKind::Client, None).await;
    let with = |patch: Value| {
        let mut b = zapi("x");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases = [
        ("name", with(json!({"name": null}))),
        ("type", with(json!({"type": "fax"}))),
        ("provider", with(json!({"provider": "whatsapp-web"}))),
        ("provider", with(json!({"type": "telegram"}))),
        ("credentials", with(json!({"credentials": null}))),
        ("credentials", with(json!({"credentials": "token"}))),
        (
            "credentials.instance_token",
            with(json!({"credentials": {"instance_id": "abc"}})),
        ),
        (
            "credentials.password",
            with(json!({"credentials": {"instance_id": "a", "instance_token": "b", "password": "c"}})),
        ),
        (
            "credentials.base_url",
            with(json!({"credentials": {"instance_id": "a", "instance_token": "b", "base_url": "ftp://x"}})),
        ),
        (
            "credentials.instance_id",
            with(json!({"credentials": {"instance_id": "", "instance_token": "b"}})),
        ),
        ("assistant_id", with(json!({"assistant_id": stranger.assistant_id}))),
        ("department_id", with(json!({"department_id": uuid::Uuid::new_v4()}))),
        ("status", with(json!({"status": "paused"}))),
    ];
    for (field, body) in cases {
        let (status, resp) = app.post("/backend/channels", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {resp}");
        assert_eq!(resp["error"]["field"], json!(field), "{resp}");
    }
    let (_, ch) = app.post("/backend/channels", &zapi("ok")).await;
    let (status, resp) = app
        .patch(
            &format!("/backend/channels/{}", ch["id"].as_str().unwrap()),
            &json!({"provider": "evolution-api"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp["error"]["field"], json!("provider"));

    let (_, _) = app
        .post("/backend/users", &json!({"name": "Ana", "email": "ana@acme.com"}))
        .await;
    let user_cases = [
        ("name", json!({"email": "b@acme.com"})),
        ("email", json!({"name": "B", "email": "not-an-email"})),
        ("email", json!({"name": "B", "email": "ANA@acme.com"})),
        ("department_id", json!({"name": "B", "department_id": "nope"})),
    ];
    for (field, body) in user_cases {
        let (status, resp) = app.post("/backend/users", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {resp}");
        assert_eq!(resp["error"]["field"], json!(field), "{resp}");
    }
    app.post("/backend/departments", &json!({"name": "Suporte"})).await;
    let (status, resp) = app.post("/backend/departments", &json!({"name": "suporte"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], json!("name"));
    app.stop().await;
}

#[tokio::test]
async fn an_agency_manages_its_clients_channels_and_a_client_never_sees_the_agency() {
    let app = TestApp::start().await; // its tenant is an agency
    let client = app.other_tenant(TenantKind::Client, Some(app.tenant.tenant_id)).await;
    let stranger = app.other_tenant(TenantKind::Client, None).await;
    let for_client = format!("/backend/channels?tenant_id={}", client.tenant_id);
    let (status, ch) = app.post(&for_client, &zapi("Cliente WhatsApp")).await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    assert_eq!(ch["tenant_id"], json!(client.tenant_id));
    let (_, own) = app.post("/backend/channels", &zapi("Agency WhatsApp")).await;

    let (status, list) = app
        .send_as(&client.api_key, Method::GET, "/backend/channels", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Cliente WhatsApp"]);
    let agency_channel = format!("/backend/channels/{}", own["id"].as_str().unwrap());
    let (status, _) = app.send_as(&client.api_key, Method::GET, &agency_channel, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let as_agency = format!("/backend/channels?tenant_id={}", app.tenant.tenant_id);
    let (status, _) = app.send_as(&client.api_key, Method::GET, &as_agency, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not someone else's client either.
    let other = format!("/backend/channels?tenant_id={}", stranger.tenant_id);
    let (status, _) = app.get(&other).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .send_as(
            &stranger.api_key,
            Method::DELETE,
            &format!("/backend/channels/{}", ch["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn an_agency_creates_lists_disables_and_enables_its_clients() {
    let app = TestApp::start().await; // an agency
    let (status, created) = app.post("/backend/clients", &json!({"name": "Acme Imóveis"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let client_key = created["api_key"].as_str().unwrap().to_string();
    let client_id = created["tenant_id"].as_str().unwrap().to_string();
    assert!(created["postback_secret"].as_str().unwrap().starts_with("whsec_"));
    let (status, _) = app.send_as(&client_key, Method::GET, "/backend/assistants", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the new client's key works and it has an assistant"
    );
    let (_, list) = app.get("/backend/clients").await;
    assert_eq!(list["data"][0]["name"], json!("Acme Imóveis"));
    assert_eq!(list["data"][0]["disabled_at"], Value::Null);

    // A client cannot manage clients, nor see its agency's.
    let (status, _) = app
        .send_as(
            &client_key,
            Method::POST,
            "/backend/clients",
            Some(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.send_as(&client_key, Method::GET, "/backend/clients", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = app
        .post(&format!("/backend/clients/{client_id}/disable"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send_as(&client_key, Method::GET, "/backend/assistants", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled client's key stops working"
    );
    let (status, _) = app.get(&format!("/backend/channels?tenant_id={client_id}")).await;
    assert_eq!(status, StatusCode::OK, "the agency still reads its data");
    let (status, _) = app
        .post(
            &format!("/backend/departments?tenant_id={client_id}"),
            &json!({"name": "Vendas"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "but cannot act for it");
    let (status, _) = app
        .post(&format!("/backend/clients/{client_id}/enable"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send_as(&client_key, Method::GET, "/backend/assistants", None).await;
    assert_eq!(status, StatusCode::OK);

    // Someone else's client is not ours to disable.
    let stranger = app.other_tenant(TenantKind::Client, None).await;
    let (status, _) = app
        .post(&format!("/backend/clients/{}/disable", stranger.tenant_id), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, resp) = app.post("/backend/clients", &json!({"name": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp["error"]["field"], json!("name"));
    app.stop().await;
}
