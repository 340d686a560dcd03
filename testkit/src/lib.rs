//! Local stand-ins for every service outside Leadflow's control, each speaking that
//! service's real wire format as its documentation defines it, recording what it was sent
//! and scriptable (latency, errors, rate limits, hangs). One set, shared by the end-to-end
//! tests (`tests/e2e`) and the benchmark (`bench/`), so what is measured talks to the same
//! fakes that what is tested does.
#![forbid(unsafe_code)]

pub mod fake_ai;
pub mod fake_google;
pub mod fake_mail;
pub mod fake_providers;
pub mod fake_status;
pub mod fake_transcriptions;
pub mod media_server;
pub mod receiver;

/// Serves `app` on a free loopback port in a background task; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base_url = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base_url
}

/// Calls `get` every 20 ms until it returns at least `n` items, and returns them; after
/// `timeout`, panics with `why` of what it got. The fakes' `wait_for…` methods.
pub async fn wait_for_count<T>(
    n: usize,
    timeout: std::time::Duration,
    mut get: impl FnMut() -> Vec<T>,
    why: impl Fn(&[T]) -> String,
) -> Vec<T> {
    let start = std::time::Instant::now();
    loop {
        let got = get();
        if got.len() >= n {
            return got;
        }
        assert!(start.elapsed() < timeout, "{}", why(&got));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
