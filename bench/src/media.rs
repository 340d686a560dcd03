//! The media sections: PDF extraction speed, the latency a media burst adds over a text
//! burst when media are ready within the debounce window, and a media worker's memory
//! while 200 PDFs are in flight at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_shared::db::assistants;
use leadflow_shared::db::tenants::CreatedTenant;
use leadflow_shared::domain::AssistantSettings;
use serde_json::{json, Value};

use leadflow_testkit::receiver::Receiver;

use super::media_fakes;
use super::sections::{spawn_worker, Section};
use super::{fakes, percentile, rss_mib, wait_until, Row, Scope};
use leadflow::{start, Roles};

const PDF_BYTES: usize = 1 << 20;

/// Posts to `/ai/process` with the tenant's key.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
    tenant: String,
    hook: String,
}

impl Client {
    /// Posts as `tenant` to the API of `running`, postbacks to `hook`.
    fn new(running: &leadflow::Running, tenant: &CreatedTenant, hook: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("http://{}/ai/process", running.http_addr.expect("api role")),
            key: tenant.api_key.clone(),
            tenant: tenant.tenant_id.to_string(),
            hook,
        }
    }

    async fn post(&self, lead: &str, kind: &str, content: &str, url: Option<&str>) -> anyhow::Result<()> {
        let mut body = json!({"tenant_id": self.tenant, "lead_id": lead, "role": "user", "message_type": kind,
                              "content": content, "debounce": true, "postback_url": self.hook});
        if let Some(u) = url {
            body["url"] = Value::from(u);
        }
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "accept failed: {}", resp.status());
        Ok(())
    }
}

/// Sends every lead's burst (`media`: text, voice note, PDF, text; else two texts),
/// 32 leads at a time, and returns each lead's last-accept instant.
async fn bursts(c: &Client, host: &str, prefix: &str, leads: usize, media: bool) -> Vec<(String, Instant)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..leads {
        let (c, host, lead, sem) = (c.clone(), host.to_string(), format!("{prefix}-{i}"), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            c.post(&lead, "text", "Oi, segue a documentação", None).await.ok()?;
            if media {
                c.post(&lead, "audio", "", Some(&format!("{host}/voice.ogg")))
                    .await
                    .ok()?;
                c.post(&lead, "pdf", "", Some(&format!("{host}/doc.pdf"))).await.ok()?;
            }
            c.post(&lead, "text", "Aguardo o retorno", None).await.ok()?;
            Some((lead, Instant::now()))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(Some(x)) = t.await {
            out.push(x);
        }
    }
    out
}

/// When each lead's first postback arrived.
fn arrivals(hooks: &Receiver) -> std::collections::HashMap<String, Instant> {
    let mut first = std::collections::HashMap::new();
    for d in hooks.deliveries() {
        let lead = d.json["lead_id"].as_str().unwrap_or_default().to_string();
        first.entry(lead).or_insert(d.at);
    }
    first
}

/// Reply latency after each lead's last message, in ms (p50, p99), for leads answered.
fn latencies(sent: &[(String, Instant)], hooks: &Receiver) -> (f64, f64, usize) {
    let got = arrivals(hooks);
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(lead, at)| got.get(lead).map(|r| r.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99), ms.len())
}

pub async fn media_latency(scope: &mut Scope, quick: bool) -> Section {
    let leads = if quick { 20 } else { 100 };
    let debounce = 2.0;
    let pdf = media_fakes::text_pdf(PDF_BYTES)?;
    let mb = pdf.len() as f64 / (1 << 20) as f64;

    // Extraction alone: the whole file, then with the default caps.
    let pages = leadflow_worker::media::pdf::extract_sync(&pdf, u32::MAX, usize::MAX)?.pages;
    let t = Instant::now();
    for _ in 0..3 {
        leadflow_worker::media::pdf::extract_sync(&pdf, u32::MAX, usize::MAX)?;
    }
    let full_ms = t.elapsed().as_secs_f64() * 1000.0 / 3.0;
    let cfg = scope.config()?;
    let t = Instant::now();
    let capped = leadflow_worker::media::pdf::extract_sync(&pdf, cfg.media.pdf_max_pages, cfg.media.pdf_max_chars)?;
    let capped_ms = t.elapsed().as_secs_f64() * 1000.0;
    // The same, the way the worker reads PDFs: in a child process under its limits.
    let sandbox = leadflow_worker::media::pdf::Sandbox::from_config(&cfg.media)?;
    let (max_pages, max_chars) = (cfg.media.pdf_max_pages, cfg.media.pdf_max_chars);
    let t = Instant::now();
    for _ in 0..3 {
        leadflow_worker::media::pdf::extract(&sandbox, &pdf, u32::MAX, usize::MAX).await?;
    }
    let child_full_ms = t.elapsed().as_secs_f64() * 1000.0 / 3.0;
    let t = Instant::now();
    for _ in 0..10 {
        leadflow_worker::media::pdf::extract(&sandbox, &pdf, max_pages, max_chars).await?;
    }
    let child_capped_ms = t.elapsed().as_secs_f64() * 1000.0 / 10.0;
    let tiny = media_fakes::text_pdf(20_000)?;
    let t = Instant::now();
    for _ in 0..20 {
        leadflow_worker::media::pdf::extract_sync(&tiny, max_pages, max_chars)?;
    }
    let tiny_in_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;
    let t = Instant::now();
    for _ in 0..20 {
        leadflow_worker::media::pdf::extract(&sandbox, &tiny, max_pages, max_chars).await?;
    }
    let tiny_child_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;

    let ai = fakes::fake_ai().await?;
    ai.transcriptions.set_latency(Duration::from_millis(500));
    let host = media_fakes::host(pdf.clone(), Duration::ZERO, Arc::default()).await?;
    let hooks = Receiver::start().await;
    let hook = hooks.url.clone();
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    let cfg = scope.config()?;
    let running = start(cfg.clone(), Roles::all(&cfg)).await?;
    let tenant = scope.tenant(&running.pool).await?;
    let s = AssistantSettings {
        debounce_seconds: debounce,
        max_wait_seconds: 30.0,
        ..AssistantSettings::default()
    };
    assistants::update(&running.pool, tenant.tenant_id, tenant.assistant_id, &s).await?;
    let client = Client::new(&running, &tenant, hook);
    let mut rows = vec![
        Row::new(
            "PDF text extraction, whole file",
            format!(
                "{:.0} ms per MB ({mb:.2} MB, {pages} pages, {full_ms:.0} ms)",
                full_ms / mb
            ),
            "",
            None,
        ),
        Row::new(
            "PDF text extraction with the default caps",
            format!(
                "{capped_ms:.0} ms ({} of {pages} pages, {} characters)",
                capped.pages_read,
                capped.text.chars().count()
            ),
            "",
            None,
        ),
        Row::new(
            "the same in the sandbox child (RLIMIT_AS, timeout)",
            format!("whole file {child_full_ms:.0} ms; default caps {child_capped_ms:.0} ms"),
            "",
            None,
        ),
        Row::new(
            "sandbox overhead on a 20 KB PDF",
            format!(
                "{tiny_in_ms:.1} ms in-process, {tiny_child_ms:.1} ms in the child (+{:.1} ms)",
                tiny_child_ms - tiny_in_ms
            ),
            "",
            None,
        ),
    ];
    // A first, unmeasured round warms connections, caches and the database.
    let mut results = Vec::new();
    for (prefix, media) in [("warm", true), ("text", false), ("media", true)] {
        let n = if prefix == "warm" { leads / 5 } else { leads };
        let sent = bursts(&client, &host, prefix, n, media).await;
        let want = sent.len();
        let all = wait_until(Duration::from_secs(120), || {
            arrivals(&hooks)
                .keys()
                .filter(|k| k.starts_with(&format!("{prefix}-")))
                .count()
                >= want
        })
        .await;
        anyhow::ensure!(all, "not every {prefix} burst was answered within 120 s");
        results.push(latencies(&sent, &hooks));
    }
    let ready: (i64, i64) = sqlx::query_as(
        r#"SELECT count(*) FILTER (WHERE x.status = 'done' AND x.updated_at <= b.due_at), count(*)
           FROM media x JOIN messages m ON m.id = x.message_id JOIN bursts b ON b.id = m.burst_id
           JOIN leads l ON l.id = m.lead_id WHERE l.external_id LIKE 'media-%'"#,
    )
    .fetch_one(&running.pool)
    .await?;
    let transcriptions = ai.transcriptions.requests().len();
    running.shutdown().await;
    let ((t50, t99, tn), (m50, m99, mn)) = (results[1], results[2]);
    let added = m50 - t50;
    let budget = debounce * 1000.0 * 0.1;
    rows.push(Row::new(
        "reply after the last message, text bursts",
        format!("p50 {t50:.0} ms, p99 {t99:.0} ms ({tn} leads)"),
        "",
        None,
    ));
    rows.push(Row::new(
        "reply after the last message, media bursts",
        format!("p50 {m50:.0} ms, p99 {m99:.0} ms ({mn} leads)"),
        "",
        None,
    ));
    rows.push(Row::new(
        "added latency of a media burst (p50; p99)",
        format!("{added:.0} ms; {:.0} ms", m99 - t99),
        "≤ 10 % of the window (200 ms)",
        Some(added <= budget),
    ));
    let notes = vec![format!(
        "{leads} leads per kind (after an unmeasured warm-up round), measured in the same run, text first; a \
         negative difference is run-to-run noise; debounce {debounce} s; a media burst is text, voice note (OGG/Opus, fake \
         transcription at 500 ms), a {mb:.2} MB text PDF and text; {} of {} media were ready before their burst was \
         due; {transcriptions} transcriptions in all (warm-up included). Extraction is single-threaded on this machine's core; the default caps \
         are LEADFLOW_PDF_MAX_PAGES={} and LEADFLOW_PDF_MAX_CHARS={}.",
        ready.0, ready.1, cfg.media.pdf_max_pages, cfg.media.pdf_max_chars
    )];
    Ok((rows, notes))
}

pub async fn media_memory(scope: &mut Scope, quick: bool) -> Section {
    let n: usize = if quick { 50 } else { 200 };
    let pdf = media_fakes::text_pdf(PDF_BYTES)?;
    // The host answers after 2 s, so every download is in flight at once and all the
    // bodies land together: the worst case for the worker's buffers.
    let in_flight = Arc::new(media_fakes::InFlight::default());
    let host = media_fakes::host(pdf.clone(), Duration::from_secs(2), in_flight.clone()).await?;
    let hooks = Receiver::start().await;
    let hook = hooks.url.clone();
    scope.set("LEADFLOW_MEDIA_CONCURRENCY", &n.to_string());
    // Only the API here: the media worker is its own process.
    let running = start(scope.config()?, Roles::api_only()).await?;
    let tenant = scope.tenant(&running.pool).await?;
    let client = Client::new(&running, &tenant, hook);
    let mut child = spawn_worker(scope, "media", 10)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(child.id()).map(|(rss, _)| rss).unwrap_or(0.0);
    let t = Instant::now();
    let mut posts = Vec::new();
    for i in 0..n {
        let (c, url) = (client.clone(), format!("{host}/doc.pdf"));
        posts.push(tokio::spawn(async move {
            c.post(&format!("mem-{i}"), "pdf", "", Some(&url)).await
        }));
    }
    for p in posts {
        p.await??;
    }
    let deadline = t + Duration::from_secs(300);
    let mut peak = 0f64;
    let done = loop {
        if let Some((rss, _)) = rss_mib(child.id()) {
            peak = peak.max(rss);
        }
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE status <> 'pending'")
            .fetch_one(&running.pool)
            .await?;
        if done as usize >= n || Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = t.elapsed().as_secs_f64();
    let hwm = rss_mib(child.id()).map(|(_, hwm)| hwm).unwrap_or(0.0);
    child.kill().ok();
    child.wait().ok();
    running.shutdown().await;
    let mb = pdf.len() as f64 / (1 << 20) as f64;
    let per_pdf = (hwm - idle) / n as f64;
    let overlapped = in_flight.max.load(Ordering::SeqCst);
    Ok((
        vec![
            Row::new(
                &format!("media worker RSS with {n} PDFs in flight (peak RSS over the run)"),
                format!("{peak:.0} MiB ({hwm:.0} MiB); idle {idle:.0} MiB"),
                "bounded: ≤ idle + in-flight × 3 × file size",
                Some(hwm <= idle + n as f64 * mb * 3.0),
            ),
            Row::new(
                "downloads in flight at once (at the file host)",
                format!("{overlapped}"),
                "",
                None,
            ),
            Row::new(
                "memory per PDF in flight",
                format!("{per_pdf:.2} MiB for a {mb:.2} MB file"),
                "",
                None,
            ),
            Row::new(
                "all PDFs understood (from the first accept; includes the host's 2 s hold)",
                format!("{done} PDFs in {secs:.1} s"),
                "",
                None,
            ),
        ],
        vec![format!(
            "{n} leads each sent one {mb:.2} MB PDF; `leadflow worker --queues media` runs as its own process with \
             LEADFLOW_MEDIA_CONCURRENCY={n}; the file host holds each response 2 s so the downloads overlap and land \
             together; each download \
             streams into a buffer capped at LEADFLOW_MEDIA_MAX_PDF_BYTES and extraction runs on one permit per core"
        )],
    ))
}
