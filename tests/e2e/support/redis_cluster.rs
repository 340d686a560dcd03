//! A Redis Cluster of the test's own: `redis-server --cluster-enabled yes` nodes on free
//! loopback ports, joined by `redis-cli --cluster create`, killed (and their files
//! removed) when dropped. Each test that needs one starts its own, so a test that kills a
//! master disturbs no other; its keys go with it (`TestApp`'s cleanup of the suite's
//! Redis has nothing to do). `redis-server` and `redis-cli` come with the Redis that
//! `scripts/services.sh` installs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// How long a node may be unreachable before the others call it failed: short, so a
/// failover takes a few seconds in a test.
const NODE_TIMEOUT_MS: u32 = 1000;

pub struct RedisCluster {
    nodes: BTreeMap<u16, Child>,
    dir: PathBuf,
}

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// Slot ranges it serves (masters only).
    pub slots: Vec<(u16, u16)>,
}

/// A port whose cluster-bus twin (port + 10000) is free too.
fn free_node_port() -> u16 {
    loop {
        let port = crate::resilience::free_port();
        if port <= 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn start_node(port: u16, dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/services.sh installs it)")
}

async fn query(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

async fn text(port: u16, cmd: &redis::Cmd) -> Option<String> {
    match query(port, cmd).await.ok()? {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        redis::Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each, every slot served and every
    /// replica in sync.
    pub async fn start(masters: usize, replicas: usize) -> Self {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < masters * (1 + replicas) {
            let p = free_node_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let dir = std::env::temp_dir().join(format!("lf-cluster-{}", ports[0]));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let nodes = ports.iter().map(|&p| (p, start_node(p, &dir))).collect();
        let me = Self { nodes, dir };
        for &port in &ports {
            eventually(Duration::from_secs(10), "a cluster node to answer", || async move {
                query(port, &redis::cmd("PING")).await.ok()
            })
            .await;
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (it comes with redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        me.wait_healthy(masters, masters * replicas).await;
        me
    }

    /// Every node, as `host:port` (what `LEADFLOW_REDIS_CLUSTER_NODES` takes).
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.keys().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The cluster as a live node sees it.
    pub async fn topology(&self) -> Vec<NodeInfo> {
        for &port in self.nodes.keys() {
            if let Some(t) = text(port, redis::cmd("CLUSTER").arg("NODES")).await {
                return parse_nodes(&t);
            }
        }
        panic!("no cluster node answers CLUSTER NODES");
    }

    /// The port of the master serving `key`'s slot now.
    pub async fn master_of(&self, key: &str) -> u16 {
        let port = *self.nodes.keys().next().expect("a node");
        let slot = match query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await {
            Ok(redis::Value::Int(n)) => n as u16,
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        };
        self.topology()
            .await
            .into_iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no live master serves slot {slot}"))
    }

    /// `kill -9` of one node.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut child) = self.nodes.remove(&port) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every live node reports `cluster_state:ok`, `masters` masters serve
    /// every slot and `replicas` replicas are linked to theirs.
    pub async fn wait_healthy(&self, masters: usize, replicas: usize) {
        eventually(Duration::from_secs(30), "the cluster to be healthy", || async {
            for &port in self.nodes.keys() {
                let info = text(port, redis::cmd("CLUSTER").arg("INFO")).await?;
                info.lines().any(|l| l.trim() == "cluster_state:ok").then_some(())?;
            }
            let live: Vec<NodeInfo> = self
                .topology()
                .await
                .into_iter()
                .filter(|n| self.nodes.contains_key(&n.port))
                .collect();
            let served: u32 = live
                .iter()
                .filter(|n| n.master)
                .flat_map(|n| n.slots.iter())
                .map(|&(a, b)| u32::from(b - a) + 1)
                .sum();
            let n_masters = live.iter().filter(|n| n.master).count();
            (served == 16384 && n_masters == masters).then_some(())?;
            let mut linked = 0;
            for n in live.iter().filter(|n| !n.master) {
                let info = text(n.port, redis::cmd("INFO").arg("replication")).await?;
                if info.lines().any(|l| l.trim() == "master_link_status:up") {
                    linked += 1;
                }
            }
            (linked >= replicas).then_some(())
        })
        .await;
    }
}

fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    // <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot> <slot> ...
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f.get(2)?;
            let slots = f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeInfo {
                port,
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                slots,
            })
        })
        .collect()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
