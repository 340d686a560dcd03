//! Where Leadflow's Redis is — one server (`LEADFLOW_REDIS_URL`) or a Redis Cluster
//! (`LEADFLOW_REDIS_CLUSTER_NODES`) — and the one place that knows what each means: how
//! BullMQ connects, what a queue is called in Redis, how Leadflow's own commands (rate
//! windows, scheduler leases, calendar locks, the reply pub/sub) connect.
//!
//! On a cluster, BullMQ's Lua scripts touch several keys of one queue at once, so all of a
//! queue's keys must hash to one slot: each queue gets a hash tag of its own
//! (`leadflow:{ai}:wait`, see `queue::Keyspace`), which keeps a queue on one master and
//! spreads the queues over the masters. One tagged prefix would do too, but would put
//! every queue on one node. Leadflow's own keys are used one at a time (a `SET NX`, an `INCR` with its `PEXPIRE`)
//! and need no tag. Classic pub/sub is broadcast over the cluster bus, so a `PUBLISH` on
//! any node reaches a subscriber on any other: the subscriber holds a plain connection to
//! one node and moves to the next when that node goes away ([`RedisTarget::node_urls`]).
//!
//! Connections are [`RedisConn`], bullmq-official's own enum over a reconnecting
//! `ConnectionManager` and a `ClusterConnection` (which follows `MOVED`/`ASK` and a
//! failover by itself), so Leadflow's commands and BullMQ's run over the same kind.

use std::time::Duration;

use bullmq::options::RedisConnectionOptions;
pub use bullmq::redis_connection::AnyConnection as RedisConn;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;

/// One Redis server, or the seed nodes of a Redis Cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://` or `rediss://` URL of one server.
    Single(String),
    /// URLs of some of the cluster's nodes; the rest of the topology is discovered.
    Cluster(Vec<String>),
}

/// Limits for a connection whose caller would rather go without Redis than wait (the
/// rate limiter): connect and answer within `timeout`, retry `retries` times.
#[derive(Debug, Clone, Copy)]
pub struct Impatient {
    pub timeout: Duration,
    pub retries: u32,
}

impl RedisTarget {
    /// Parses `LEADFLOW_REDIS_CLUSTER_NODES`: `host:port` or `redis://…` items, comma
    /// separated.
    pub fn parse_cluster_nodes(value: &str) -> Result<Self, String> {
        let mut nodes = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let url = if item.contains("://") {
                item.to_string()
            } else {
                format!("redis://{item}")
            };
            let parsed = url::Url::parse(&url).map_err(|e| format!("{item:?} is not host:port ({e})"))?;
            if !matches!(parsed.scheme(), "redis" | "rediss") {
                return Err(format!("{item:?}: only redis:// and rediss:// nodes"));
            }
            if parsed.host_str().is_none_or(str::is_empty) || parsed.port().is_none() {
                return Err(format!("{item:?} is not host:port"));
            }
            nodes.push(url);
        }
        if nodes.is_empty() {
            return Err("names no node (host:port,host:port,…)".into());
        }
        Ok(Self::Cluster(nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// How BullMQ connects (`max_connections` is its pool of blocking connections).
    pub fn bull_options(&self) -> RedisConnectionOptions {
        let opts = RedisConnectionOptions {
            max_connections: 8,
            ..Default::default()
        };
        match self {
            Self::Single(url) => RedisConnectionOptions {
                url: url.clone(),
                ..opts
            },
            Self::Cluster(nodes) => opts.cluster_nodes(nodes.iter().cloned()),
        }
    }

    /// A connection that reconnects by itself, for Leadflow's own commands.
    pub async fn connect(&self) -> redis::RedisResult<RedisConn> {
        match self {
            Self::Single(url) => Ok(RedisConn::Single(
                redis::Client::open(url.as_str())?.get_connection_manager().await?,
            )),
            Self::Cluster(nodes) => Ok(RedisConn::Cluster(
                ClusterClient::new(nodes.clone())?.get_async_connection().await?,
            )),
        }
    }

    /// [`connect`](Self::connect) with short timeouts and few retries.
    pub async fn connect_impatient(&self, limits: Impatient) -> redis::RedisResult<RedisConn> {
        match self {
            Self::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(limits.timeout))
                    .set_response_timeout(Some(limits.timeout))
                    .set_number_of_retries(limits.retries as usize);
                let client = redis::Client::open(url.as_str())?;
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            Self::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .connection_timeout(limits.timeout)
                    .response_timeout(limits.timeout)
                    .retries(limits.retries)
                    .build()?;
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Servers a plain connection may use (a subscriber, a probe): the one server, or each
    /// seed node in turn.
    pub fn node_urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Cluster(nodes) => nodes,
        }
    }

    /// Whether Redis can take work now: the server answers `PING`; a cluster answers
    /// `CLUSTER INFO` with `cluster_state:ok` (every slot served) from a fresh connection.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Self::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| format!("bad URL: {e}"))?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("unreachable: {e}"))?;
                let pong: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("unreachable: {e}"))?;
                (pong == "PONG")
                    .then_some(())
                    .ok_or_else(|| format!("answered {pong:?}"))
            }
            Self::Cluster(nodes) => {
                let client = ClusterClient::new(nodes.clone()).map_err(|e| format!("bad node list: {e}"))?;
                let mut conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| format!("unreachable: {e}"))?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("unreachable: {e}"))?;
                match info.lines().find_map(|l| l.trim().strip_prefix("cluster_state:")) {
                    Some("ok") => Ok(()),
                    Some(state) => Err(format!("cluster_state:{state}")),
                    None => Err("CLUSTER INFO has no cluster_state".into()),
                }
            }
        }
    }
}

/// Without passwords: the target as logs and `Debug` may show it.
impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(url) => write!(f, "Single({})", redact(url)),
            Self::Cluster(nodes) => {
                let shown: Vec<String> = nodes.iter().map(|n| redact(n)).collect();
                write!(f, "Cluster({})", shown.join(","))
            }
        }
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_host_port_or_urls() {
        let t = RedisTarget::parse_cluster_nodes("127.0.0.1:7000, redis://:pw@10.0.0.2:7001,").unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://:pw@10.0.0.2:7001".into()
            ])
        );
        assert_eq!(
            format!("{t:?}"),
            "Cluster(redis://127.0.0.1:7000,redis://:****@10.0.0.2:7001)"
        );
        for bad in ["", " , ", "127.0.0.1", "http://h:1", "h:notaport"] {
            assert!(RedisTarget::parse_cluster_nodes(bad).is_err(), "{bad:?}");
        }
    }
}
