//! A small closed-loop HTTP load generator: `concurrency` tasks each send the next
//! request as soon as the previous one answered, for `duration` or `total` requests. A
//! 429 is waited out as a well-behaved sender would (its `Retry-After`, else 1 s) and the
//! same request sent again; it counts as neither a request nor an error.
//! Both sides of a comparison use this same generator in the same run. A request is raw
//! bytes plus headers, so formats that sign each body (Meta, Twilio) are measured with
//! their real verification, not a shortcut.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// One request: its body and its headers (content type, auth, signature).
pub struct Request {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    pub fn json(body: &Value) -> Self {
        Request {
            body: serde_json::to_vec(body).expect("a JSON value serialises"),
            headers: vec![("content-type", "application/json".into())],
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Request `i` of a run.
pub type Requests = Arc<dyn Fn(usize) -> Request + Send + Sync>;

/// JSON bodies from `make`, each with `key` as bearer token.
pub fn json_with_key(key: &str, make: Arc<dyn Fn(usize) -> Value + Send + Sync>) -> Requests {
    let auth = format!("Bearer {key}");
    Arc::new(move |i| Request::json(&make(i)).header("authorization", auth.clone()))
}

pub enum Stop {
    After(Duration),
    Total(usize),
}

/// Posts `make(i)` JSON bodies to `url` with `key` until `stop`.
pub async fn run(
    url: String,
    key: String,
    concurrency: usize,
    stop: Stop,
    make: Arc<dyn Fn(usize) -> Value + Send + Sync>,
) -> LoadResult {
    run_requests(url, concurrency, stop, json_with_key(&key, make)).await
}

/// Posts `make(i)` to `url` until `stop`.
pub async fn run_requests(url: String, concurrency: usize, stop: Stop, make: Requests) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (deadline, total) = match stop {
        Stop::After(d) => (Some(started + d), usize::MAX),
        Stop::Total(n) => (None, n),
    };
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, errors, make) =
            (client.clone(), url.clone(), next.clone(), errors.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let answer = loop {
                    let req = make(i);
                    let mut builder = client.post(&url).body(req.body);
                    for (name, value) in req.headers {
                        builder = builder.header(name, value);
                    }
                    let t = Instant::now();
                    let answer = builder.send().await;
                    match answer {
                        Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                            let wait = leadflow_shared::retry_after::from_headers(r.headers())
                                .unwrap_or(Duration::from_secs(1));
                            tokio::time::sleep(wait).await;
                        }
                        other => break (other.map(|r| r.status().is_success()).unwrap_or(false), t.elapsed()),
                    }
                };
                let (ok, took) = answer;
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(took.as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    LoadResult {
        requests: all.len(),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}
