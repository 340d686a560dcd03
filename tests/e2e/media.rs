//! Media in the pipeline: voice notes transcribed, PDFs read, images passed as parts —
//! all started at accept so they overlap the debounce window, one turn per burst, and a
//! medium that cannot be understood becomes a note while the rest is still answered.

use std::time::{Duration, Instant};

use base64::Engine;
use leadflow_shared::queue::ProcessMedia;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::fake_transcriptions::{FakeTranscriptions, TranscriptionScript};
use crate::support::media_server::{fixture, MediaServer};
use crate::support::{last_user_turn, TestApp};

fn media_msg(app: &TestApp, lead: &str, kind: &str, url: &str, caption: &str, debounce: bool) -> Value {
    let mut m = app.msg(lead, caption, debounce);
    m["message_type"] = json!(kind);
    m["url"] = json!(url);
    if caption.is_empty() {
        m.as_object_mut().unwrap().remove("content");
    }
    m
}

/// The content parts of the last user turn (a plain string is one text part).
fn user_parts(body: &Value) -> Vec<Value> {
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], json!("user"));
    match &last["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts.clone(),
        other => panic!("unexpected content {other}"),
    }
}

async fn send(app: &TestApp, body: &Value) -> Value {
    let (status, out) = app.process(body).await;
    assert!(status.is_success(), "{status} {out}");
    out
}

#[tokio::test]
async fn a_burst_of_text_voice_photo_pdf_text_is_one_turn_in_order() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({
        "debounce_seconds": 2.5, "max_wait_seconds": 30,
        "transcription_language": "pt", "transcription_prompt": "Vila Mariana, IPTU", "image_detail": "low"
    }))
    .await;
    // Provider URLs often carry no extension and a generic type: the bytes decide.
    let voice = media.put("/wa/3AC2D94E", fixture("voice.ogg"), Some("application/octet-stream"));
    let photo = media.put("/wa/photo", fixture("photo.png"), Some("image/png"));
    let pdf = media.put("/docs/comprovante_renda.pdf", fixture("text.pdf"), None);
    let lead = "lead-media";
    send(&app, &app.msg(lead, "Oi, tudo bem?", true)).await;
    send(&app, &media_msg(&app, lead, "audio", &voice, "", true)).await;
    send(&app, &media_msg(&app, lead, "image", &photo, "esse é o prédio", true)).await;
    send(&app, &media_msg(&app, lead, "pdf", &pdf, "", true)).await;
    send(&app, &app.msg(lead, "Aguardo", true)).await;
    let last_sent = Instant::now();

    let got = app.receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json["success"], json!(true), "{}", got[0].json);
    assert_eq!(got[0].json["messages_processed"], json!(5));
    let chats = app.ai.requests();
    assert_eq!(chats.len(), 1, "one AI call for the whole burst");

    // The transcription: multipart, a real extension, the assistant's model and hints.
    let tr = app.ai.transcriptions.requests();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].file_name, "audio.ogg");
    assert_eq!(tr[0].content_type.as_deref(), Some("audio/ogg"));
    assert_eq!(tr[0].model.as_deref(), Some("whisper-1"));
    assert_eq!(tr[0].language.as_deref(), Some("pt"));
    assert_eq!(tr[0].prompt.as_deref(), Some("Vila Mariana, IPTU"));
    assert_eq!(tr[0].response_format.as_deref(), Some("json"));
    assert_eq!(tr[0].auth.as_deref(), Some("Bearer sk-test"));
    // Media work overlapped the window: done long before the burst was due.
    let answered = tr[0].answered_at.unwrap();
    assert!(
        answered < last_sent + Duration::from_secs(2),
        "transcribed during the window"
    );
    assert!(
        chats[0].at >= last_sent + Duration::from_millis(2400),
        "flushed after the window"
    );

    let parts = user_parts(&chats[0].body);
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert_eq!(parts[0]["type"], json!("text"));
    assert_eq!(
        parts[0]["text"],
        json!(concat!(
            "Oi, tudo bem?\n",
            "[voice note] transcript of a 4088-byte ogg voice note\n",
            "[image; caption: \"esse é o prédio\"]"
        ))
    );
    assert_eq!(parts[1]["type"], json!("image_url"));
    assert_eq!(parts[1]["image_url"]["detail"], json!("low"));
    let url = parts[1]["image_url"]["url"].as_str().unwrap();
    let b64 = url
        .strip_prefix("data:image/png;base64,")
        .expect("inlined as a data URL");
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(decoded, fixture("photo.png"));
    let tail = parts[2]["text"].as_str().unwrap();
    assert!(
        tail.starts_with("[PDF \"comprovante_renda.pdf\", 3 pages]\nComprovante de renda: São Paulo, ação nº 42"),
        "{tail}"
    );
    let (p2, p3) = (tail.find("Página dois").unwrap(), tail.find("Última página").unwrap());
    assert!(p2 < p3);
    assert!(tail.ends_with("\nAguardo"), "{tail}");
    for path in ["/wa/3AC2D94E", "/wa/photo", "/docs/comprovante_renda.pdf"] {
        assert_eq!(media.hits(path), 1, "{path} downloaded once");
    }

    // The stored conversation keeps what the media became…
    let (status, conv) = app.get(&format!("/backend/leads/{lead}/messages")).await;
    assert_eq!(status, StatusCode::OK);
    let items = conv["data"].as_array().unwrap();
    let audio = items.iter().find(|m| m["message_type"] == json!("audio")).unwrap();
    assert_eq!(audio["media"]["status"], json!("done"));
    assert_eq!(
        audio["media"]["text"],
        json!("transcript of a 4088-byte ogg voice note")
    );
    let doc = items.iter().find(|m| m["message_type"] == json!("pdf")).unwrap();
    assert_eq!(doc["media"]["pages"], json!(3));
    assert_eq!(doc["media"]["mime"], json!("application/pdf"));

    // …and the next turn sees it as history, without re-processing anything.
    let (status, out) = app.process(&app.msg(lead, "e então?", false)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let second = &app.ai.requests()[1].body;
    let history: Vec<String> = crate::support::fake_ai::messages(second)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert!(
        history
            .iter()
            .any(|t| t.contains("[voice note] transcript of a 4088-byte")),
        "{history:?}"
    );
    assert!(history.iter().any(|t| t.contains("ação nº 42")), "{history:?}");
    assert_eq!(app.ai.transcriptions.requests().len(), 1);
    assert_eq!(media.total_hits(), 3);
    app.stop().await;
}

#[tokio::test]
async fn the_audio_file_name_matches_the_real_format() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    // An MP3 behind an extension-less URL, and a WAV whose URL claims a voice note.
    let mp3 = media.put("/a/blob", fixture("voice.mp3"), Some("application/octet-stream"));
    let wav = media.put("/a/voice.oga", fixture("voice.wav"), Some("audio/ogg"));
    for (lead, url, want) in [("lead-mp3", &mp3, "mp3"), ("lead-wav", &wav, "wav")] {
        let (status, out) = app.process(&media_msg(&app, lead, "audio", url, "", false)).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let reply = out["response"].as_str().unwrap();
        assert!(reply.contains("[voice note] transcript of a"), "{reply}");
        assert!(reply.contains(&format!("-byte {want} voice note")), "{reply}");
    }
    let names: Vec<String> = app
        .ai
        .transcriptions
        .requests()
        .into_iter()
        .map(|r| r.file_name)
        .collect();
    assert_eq!(names, ["audio.mp3", "audio.wav"]);
    app.stop().await;
}

#[tokio::test]
async fn unreadable_media_become_notes_and_the_rest_is_answered() {
    let media = MediaServer::start().await;
    let app = TestApp::builder()
        .env("LEADFLOW_MEDIA_MAX_PDF_BYTES", "100KB")
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 1.0})).await;
    let scan = media.put("/scan.pdf", fixture("scan.pdf"), Some("application/pdf"));
    let mut corrupt = b"%PDF-1.4\n".to_vec();
    corrupt.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    let corrupt = media.put("/corrupt.pdf", corrupt, Some("application/pdf"));
    let big = media.put("/big.pdf", vec![b'%'; 150_000], Some("application/pdf"));
    let expired = media.put(
        "/expired.jpg",
        b"<!DOCTYPE html><title>URL signature expired</title>".to_vec(),
        Some("text/html"),
    );
    let jpeg = media.put("/ok.jpg", fixture("photo.jpg"), Some("image/jpeg"));
    let gone = media.status("/gone.ogg", 404);
    let lead = "lead-bad-media";
    let burst = [
        ("pdf", &scan),
        ("pdf", &corrupt),
        ("pdf", &big),
        ("image", &expired),
        ("image", &jpeg),
        ("audio", &gone),
    ];
    for (kind, url) in burst {
        send(&app, &media_msg(&app, lead, kind, url, "", true)).await;
    }
    send(&app, &app.msg(lead, "conseguiu ver?", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json["success"], json!(true), "the burst is still answered");
    let body = &app.ai.requests()[0].body;
    let turn = last_user_turn(body);
    let expected = [
        "[PDF \"scan.pdf\", 1 page: PDF without extractable text]",
        "[PDF could not be read: the file is damaged or not a PDF]",
        "[PDF could not be read: the file is too large]",
        "[image could not be loaded: the file is not in a supported format]",
        "[image]",
        "[voice note could not be transcribed: the file could not be downloaded]",
        "conseguiu ver?",
    ];
    let mut at = 0;
    for e in expected {
        let found = turn[at..]
            .find(e)
            .unwrap_or_else(|| panic!("{e:?} missing (in order) from {turn}"));
        at += found + e.len();
    }
    let images: Vec<Value> = user_parts(body)
        .into_iter()
        .filter(|p| p["type"] == json!("image_url"))
        .collect();
    assert_eq!(images.len(), 1);
    assert!(images[0]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/jpeg;base64,"));
    // Clear failures are not retried.
    for path in ["/corrupt.pdf", "/big.pdf", "/expired.jpg", "/gone.ogg"] {
        assert_eq!(media.hits(path), 1, "{path}");
    }
    let (_, conv) = app.get(&format!("/backend/leads/{lead}/messages")).await;
    let codes: Vec<Value> = conv["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.get("media"))
        .map(|x| x["error_code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            json!(null),
            json!("pdf_unreadable"),
            json!("media_too_large"),
            json!("media_wrong_type"),
            json!(null),
            json!("media_download_failed")
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_transcription_still_gets_a_reply_with_a_note() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.ai.transcriptions.push(FakeTranscriptions::error(
        400,
        "Audio file is too short",
        "invalid_request_error",
    ));
    let voice = media.put("/v.ogg", fixture("voice.ogg"), Some("audio/ogg"));
    let (status, out) = app
        .process(&media_msg(&app, "lead-tr-fail", "audio", &voice, "ouve aí", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let reply = out["response"].as_str().unwrap();
    assert!(
        reply.contains("[voice note could not be transcribed: the transcription service failed; caption: \"ouve aí\"]"),
        "{reply}"
    );
    assert_eq!(app.ai.transcriptions.requests().len(), 1, "a 4xx is not retried");
    app.stop().await;
}

#[tokio::test]
async fn a_transcription_5xx_is_retried() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.ai.transcriptions.push(FakeTranscriptions::error(
        500,
        "The server had an error while processing your request.",
        "server_error",
    ));
    let voice = media.put("/v.ogg", fixture("voice.ogg"), Some("audio/ogg"));
    let (status, out) = app
        .process(&media_msg(&app, "lead-tr-retry", "audio", &voice, "", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(
        out["response"]
            .as_str()
            .unwrap()
            .contains("[voice note] transcript of a 4088-byte ogg"),
        "{out}"
    );
    assert_eq!(app.ai.transcriptions.requests().len(), 2);
    assert_eq!(media.hits("/v.ogg"), 2, "each attempt downloads again");
    app.stop().await;
}

#[tokio::test]
async fn media_urls_are_ssrf_guarded_including_redirects() {
    let public = MediaServer::start().await; // stands in for a public host
    let internal = MediaServer::start().await; // a private service that must stay unreachable
    internal.put("/secret.png", fixture("photo.png"), Some("image/png"));
    let allowed = format!("{}", public.addr);
    let app = TestApp::builder()
        .env("LEADFLOW_ALLOW_PRIVATE_URLS", "false")
        .env("LEADFLOW_ALLOW_PRIVATE_ADDRS", &allowed)
        .start()
        .await;
    // A private address given directly: refused at accept, nothing fetched.
    for url in [
        internal.url("/secret.png"),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let (status, out) = app
            .process(&media_msg(&app, "lead-ssrf", "image", &url, "", false))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
        assert_eq!(out["error"]["field"], json!("url"));
    }
    // A redirect to one: refused at that hop; the lead still gets an answer.
    let hop = public.redirect("/photo.png", &internal.url("/secret.png"));
    let (status, out) = app
        .process(&media_msg(&app, "lead-ssrf", "image", &hop, "", false))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(
        out["response"]
            .as_str()
            .unwrap()
            .contains("[image could not be loaded: the link is not allowed]"),
        "{out}"
    );
    assert_eq!(public.hits("/photo.png"), 1);
    assert_eq!(internal.total_hits(), 0, "the private service never saw a request");
    app.stop().await;
}

#[tokio::test]
async fn slow_media_is_waited_for_and_never_processed_twice() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    app.ai.transcriptions.set_latency(Duration::from_millis(1500));
    app.ai
        .transcriptions
        .push(TranscriptionScript::Text("olá, quero saber do apartamento".into()));
    let voice = media.put("/slow.ogg", fixture("voice.ogg"), Some("audio/ogg"));
    let sent = Instant::now();
    let accepted = send(&app, &media_msg(&app, "lead-slow", "audio", &voice, "", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(20)).await;
    let tr = app.ai.transcriptions.requests();
    assert_eq!(tr.len(), 1);
    assert!(
        tr[0].at < sent + Duration::from_millis(300),
        "started at accept, before the burst was due"
    );
    let chat = &app.ai.requests()[0];
    assert!(
        chat.at >= tr[0].answered_at.unwrap(),
        "the generation waited for the transcript"
    );
    let reply = got[0].json["response"].as_str().unwrap();
    assert!(
        reply.contains("[voice note] olá, quero saber do apartamento"),
        "{reply}"
    );

    // The queue delivers at least once: a repeated job (or the sweeper's copy) for a
    // medium already understood does nothing.
    let queues = app.queues().await;
    let message_id = accepted["message_id"].as_str().unwrap().parse().unwrap();
    for job in [
        ProcessMedia {
            message_id,
            attempt: 1,
            sweep: Some(1),
        },
        ProcessMedia {
            message_id,
            attempt: 2,
            sweep: None,
        },
    ] {
        queues.enqueue(&job, Duration::ZERO).await.unwrap();
    }
    app.settle().await;
    assert_eq!(app.ai.transcriptions.requests().len(), 1);
    assert_eq!(media.hits("/slow.ogg"), 1);
    queues.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_wait_for_media_is_bounded() {
    let media = MediaServer::start().await;
    let app = TestApp::builder().env("LEADFLOW_MEDIA_WAIT", "1s").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let voice = media.put_slow(
        "/stuck.ogg",
        fixture("voice.ogg"),
        Some("audio/ogg"),
        Duration::from_secs(8),
    );
    let started = Instant::now();
    send(&app, &media_msg(&app, "lead-stuck", "audio", &voice, "", true)).await;
    send(&app, &app.msg("lead-stuck", "alô?", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the download"
    );
    let reply = got[0].json["response"].as_str().unwrap();
    assert!(
        reply.contains("[voice note could not be transcribed: it was not ready in time]\nalô?"),
        "{reply}"
    );
    app.stop().await;
}

#[tokio::test]
async fn per_assistant_pdf_files_and_image_urls() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"pdf_as_file": true, "image_inline": false, "image_detail": "high"}))
        .await;
    let pdf = media.put("/contrato.pdf", fixture("text.pdf"), Some("application/pdf"));
    let photo = media.put("/public/photo.jpg", fixture("photo.jpg"), Some("image/jpeg"));
    send(&app, &media_msg(&app, "lead-files", "pdf", &pdf, "meu contrato", true)).await;
    send(&app, &media_msg(&app, "lead-files", "image", &photo, "", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(20)).await;
    let parts = user_parts(&app.ai.requests()[0].body);
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "file", "text", "image_url"], "{parts:?}");
    assert_eq!(
        parts[0]["text"],
        json!("[PDF \"contrato.pdf\", 3 pages; caption: \"meu contrato\"]")
    );
    assert_eq!(parts[1]["file"]["filename"], json!("contrato.pdf"));
    let data = parts[1]["file"]["file_data"].as_str().unwrap();
    let b64 = data.strip_prefix("data:application/pdf;base64,").unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
        fixture("text.pdf")
    );
    // The provider fetches a public image URL itself when the assistant says so.
    assert_eq!(parts[3]["image_url"]["url"], json!(photo));
    assert_eq!(parts[3]["image_url"]["detail"], json!("high"));
    app.stop().await;
}

/// A one-page PDF whose content stream inflates to `inflated` bytes of spaces: about
/// 1 MB on the wire for 1 GiB inflated (deflate's ratio on a run of one byte). Built in
/// milliseconds: one 1 MiB chunk is deflated after a full flush, which makes every later
/// chunk's output the same bytes, so they are repeated instead of recompressed.
fn pdf_bomb(inflated: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    const CHUNK: usize = 1 << 20;
    let chunk = vec![b' '; CHUNK];
    let deflate = |z: &mut Compress, input: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(CHUNK);
        let start = z.total_in();
        while (z.total_in() - start) < input.len() as u64 || out.is_empty() {
            let at = (z.total_in() - start) as usize;
            out.reserve(64 * 1024);
            z.compress_vec(&input[at..], &mut out, flush).unwrap();
            if matches!(flush, FlushCompress::Finish) {
                break;
            }
        }
        out
    };
    let mut z = Compress::new(Compression::best(), false);
    let first = deflate(&mut z, &chunk, FlushCompress::Full);
    let repeated = deflate(&mut z, &chunk, FlushCompress::Full);
    let end = deflate(&mut z, &[], FlushCompress::Finish);
    let chunks = inflated / CHUNK;
    let mut stream = vec![0x78, 0xda];
    stream.extend_from_slice(&first);
    for _ in 1..chunks {
        stream.extend_from_slice(&repeated);
    }
    stream.extend_from_slice(&end);
    // Adler-32 of `n` spaces, in closed form.
    let (n, b, m) = ((chunks * CHUNK) as u128, u128::from(b' '), 65_521u128);
    let a = (1 + n * b) % m;
    let s = (n + b * n * (n + 1) / 2) % m;
    stream.extend_from_slice(&(((s << 16) | a) as u32).to_be_bytes());
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    let objects: [Vec<u8>; 4] = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>".to_vec(),
        [
            format!("<< /Length {} /Filter /FlateDecode >>\nstream\n", stream.len()).into_bytes(),
            stream,
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ];
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        pdf.extend(body);
        pdf.extend(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend(b"xref\n0 5\n0000000000 65535 f \n");
    for o in offsets {
        pdf.extend(format!("{o:010} 00000 n \n").into_bytes());
    }
    pdf.extend(format!("trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").into_bytes());
    pdf
}

#[tokio::test]
async fn a_pdf_bomb_is_a_note_and_the_worker_and_other_media_carry_on() {
    let bomb = pdf_bomb(1 << 30);
    assert!(bomb.len() < 2_000_000, "the bomb is small on the wire: {}", bomb.len());
    {
        // It really is a valid stream of spaces (its first 8 MiB, checked here).
        use std::io::Read;
        let start = bomb.windows(7).position(|w| w == b"stream\n").unwrap() + 7;
        let mut head = vec![0u8; 8 << 20];
        flate2::read::ZlibDecoder::new(&bomb[start..])
            .read_exact(&mut head)
            .unwrap();
        assert!(head.iter().all(|b| *b == b' '));
    }
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.5})).await;
    let bomb_url = media.put("/bomb.pdf", bomb, Some("application/pdf"));
    let good_url = media.put("/renda.pdf", fixture("text.pdf"), Some("application/pdf"));
    let before = crate::support::rss_kib();
    // Both at once: the good PDF is read while the bomb goes off next to it.
    send(&app, &media_msg(&app, "lead-bomb", "pdf", &bomb_url, "", true)).await;
    send(&app, &media_msg(&app, "lead-good", "pdf", &good_url, "", true)).await;
    let got = app.receiver.wait_for(2, Duration::from_secs(60)).await;
    assert!(got.iter().all(|d| d.json["success"] == json!(true)), "both answered");
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT x.status, x.error_code, x.text FROM media x JOIN messages m ON m.id = x.message_id
         JOIN leads l ON l.id = m.lead_id ORDER BY l.external_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows[0].0, "failed");
    assert_eq!(rows[0].1.as_deref(), Some("pdf_unreadable"));
    let error: String = sqlx::query_scalar("SELECT error FROM media WHERE status = 'failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        error.starts_with("PDF could not be read ("),
        "the child died on its limit: {error}"
    );
    assert_eq!(rows[1].0, "done", "the other PDF is read normally");
    assert!(rows[1].2.as_deref().unwrap().contains("Comprovante de renda"));
    let turns: Vec<String> = app.ai.requests().iter().map(|r| last_user_turn(&r.body)).collect();
    assert!(turns.iter().any(|t| t.contains("[PDF could not be read")), "{turns:?}");
    // The bomb inflated in the child, under its limit: this process did not grow by it.
    let grown = crate::support::rss_kib().saturating_sub(before);
    eprintln!("RSS of the test process grew by {grown} KiB while the bomb was read");
    assert!(grown < 200 * 1024, "grew by {grown} KiB");
    app.stop().await;
}

/// A PDF whose page dictionary nests arrays 200,000 deep: lopdf's recursive parser
/// overflows its stack on it, which no `catch_unwind` can absorb (found by `scripts/fuzz`).
fn deeply_nested_pdf() -> Vec<u8> {
    let n = 200_000;
    let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /X {deep} >>"),
        "<< /Length 2 >>\nstream\nBT\nendstream".to_string(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf += &format!("{} 0 obj\n{body}\nendobj\n", i + 1);
    }
    let xref = pdf.len();
    pdf += "xref\n0 5\n0000000000 65535 f \n";
    for o in offsets {
        pdf += &format!("{o:010} 00000 n \n");
    }
    pdf += &format!("trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n");
    pdf.into_bytes()
}

#[tokio::test]
async fn a_pdf_that_overflows_the_parsers_stack_is_a_note_not_a_dead_worker() {
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let url = media.put("/deep.pdf", deeply_nested_pdf(), Some("application/pdf"));
    send(&app, &media_msg(&app, "lead-deep", "pdf", &url, "", true)).await;
    let got = app.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].json["success"], json!(true));
    let code: Option<String> = sqlx::query_scalar("SELECT error_code FROM media")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(code.as_deref(), Some("pdf_unreadable"));
    // The worker is alive: the next message is answered too.
    send(&app, &app.msg("lead-deep", "e agora?", true)).await;
    app.receiver.wait_for(2, Duration::from_secs(30)).await;
    app.stop().await;
}
