//! A TCP proxy that can be cut: the suite shares one PostgreSQL, so "PostgreSQL is down"
//! is simulated for one app by closing every proxied connection and refusing new ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct CuttableProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl CuttableProxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, conns2, target) = (up.clone(), conns.clone(), target.to_string());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, up, conns }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A TestApp whose PostgreSQL connections go through a [`CuttableProxy`].
pub async fn app_behind_proxy() -> (CuttableProxy, super::TestApp) {
    let target = super::pg_server().trim_start_matches("postgres://").to_string();
    let proxy = CuttableProxy::start(&target).await;
    let app = super::TestApp::builder()
        .pg_via(&format!("postgres://127.0.0.1:{}", proxy.port))
        .start()
        .await;
    (proxy, app)
}
