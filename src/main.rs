//! The `leadflow` binary: parses the command line and starts roles from the library.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use leadflow::{start, Roles};
use leadflow_shared::db::tenants::{self, TenantKind};
use leadflow_shared::queue::QueueKind;
use leadflow_shared::{db, Config};

#[derive(Parser)]
#[command(name = "leadflow", version, about = "Self-hosted backend for AI lead messaging")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API, workers and scheduler in one process.
    All,
    /// The HTTP API only.
    Api,
    /// Queue consumers.
    Worker {
        /// Comma-separated queues to consume (flush, ai, media, postback, inbound, send, scheduled, mail, calendar); default all.
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// Jobs in flight per queue (default LEADFLOW_WORKER_CONCURRENCY).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Periodic ticks (sweeper); safe to run as several replicas.
    Scheduler,
    /// Create the database if needed and run migrations.
    Migrate,
    /// Exit 0 when `/readyz` answers 200, else 1 (for container health checks).
    Healthcheck {
        /// Default: `/readyz` on this machine's LEADFLOW_HTTP_ADDR port; a worker or
        /// scheduler container checks its ops listener, e.g. http://127.0.0.1:9464/readyz.
        #[arg(long)]
        url: Option<String>,
    },
    /// Every queue's backlog, pause state, oldest waiting job and workers (as the console).
    Queues,
    /// Everything that failed for good, across tenants (as the console).
    Failures {
        #[command(subcommand)]
        command: FailuresCommand,
    },
    /// The effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Tenant administration.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints {"tenant_id", "api_key", "postback_secret", "assistant_id"}.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "client")]
        kind: Kind,
        /// The agency this client belongs to.
        #[arg(long)]
        parent: Option<uuid::Uuid>,
    },
    /// Give a tenant its own AI key and/or base URL (they win over the defaults).
    SetAi {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long, env = "LEADFLOW_TENANT_AI_API_KEY")]
        api_key: Option<String>,
        #[arg(long)]
        base_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum FailuresCommand {
    /// Newest first, one JSON object per line.
    List {
        /// burst, postback, notification, send, media or calendar.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Matched against the error code, the message and the lead id.
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One more try (a burst: as a new burst with the same messages).
    Retry { kind: String, id: uuid::Uuid },
    /// Off the list (kept, marked).
    Discard { kind: String, id: uuid::Uuid },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (defaults, file, environment, `_FILE` secrets) and print
    /// every setting with where it came from, secrets masked; exit 1 naming the variable
    /// when something is wrong.
    Check,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Agency,
    Client,
}

fn main() -> anyhow::Result<()> {
    // The PDF extraction child (see `leadflow_worker::media::pdf`): limits itself and
    // reads one file before any runtime, thread or configuration exists.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(leadflow_worker::media::pdf::CHILD_COMMAND) {
        std::process::exit(leadflow_worker::media::pdf::child_main(&args[2..]));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADFLOW_LOG")
        .unwrap_or_else(|_| "info,sqlx=warn,bullmq=warn".into());
    // Colours only for a terminal: escape codes in a log file or a pipeline are noise.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // Text for people at a terminal, JSON (one object per line) for log pipelines.
    match std::env::var("LEADFLOW_LOG_FORMAT").as_deref().map(str::trim) {
        Err(_) | Ok("text") => logs.init(),
        Ok("json") => logs.json().flatten_event(true).with_current_span(false).init(),
        Ok(other) => anyhow::bail!("LEADFLOW_LOG_FORMAT: must be json or text, not {other:?}"),
    }
    // A panic is a bug: logged (with where) like every other error, in the log's format,
    // not as a bare line on stderr. The API answers it as a JSON 500 and keeps serving.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(location = location.as_deref().unwrap_or("unknown"), panic = %message, "panic");
    }));
    let cli = Cli::parse();
    if let Command::Healthcheck { url } = &cli.command {
        return healthcheck(url.as_deref()).await;
    }
    if let Command::Config {
        command: ConfigCommand::Check,
    } = &cli.command
    {
        return config_check();
    }
    let mut cfg = Config::load().context("invalid configuration")?;
    let roles = match cli.command {
        Command::All => Roles::all(&cfg),
        Command::Api => Roles::api_only(),
        Command::Worker { queues, concurrency } => {
            let kinds = if queues.is_empty() {
                QueueKind::ALL.to_vec()
            } else {
                queues
                    .iter()
                    .map(|q| QueueKind::parse(q).with_context(|| format!("--queues: unknown queue {q:?}")))
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            Roles {
                api: false,
                worker: Some((kinds, concurrency.unwrap_or(cfg.worker_concurrency).max(1))),
                scheduler: false,
            }
        }
        Command::Scheduler => Roles {
            api: false,
            worker: None,
            scheduler: true,
        },
        Command::Healthcheck { .. } | Command::Config { .. } => {
            unreachable!("answered before the configuration is loaded")
        }
        Command::Migrate => {
            db::connect_and_migrate(&cfg).await?;
            eprintln!("migrations applied");
            return Ok(());
        }
        Command::Tenant { command } => return tenant(&mut cfg, command).await,
        Command::Queues => return queues(&cfg).await,
        Command::Failures { command } => return failures(&mut cfg, command).await,
    };
    let running = start(cfg, roles).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight work");
    running.shutdown().await;
    Ok(())
}

async fn tenant(cfg: &mut Config, command: TenantCommand) -> anyhow::Result<()> {
    let key = cfg.resolve_master_key()?;
    let pool = db::connect_for_role(cfg).await?;
    db::rebind_secrets(&pool, &key).await?;
    match command {
        TenantCommand::Create { name, kind, parent } => {
            let kind = match kind {
                Kind::Agency => TenantKind::Agency,
                Kind::Client => TenantKind::Client,
            };
            if parent.is_some() && kind == TenantKind::Agency {
                anyhow::bail!("--parent is only for client tenants");
            }
            let created = tenants::create(&pool, &key, &name, kind, parent).await?;
            println!("{}", serde_json::to_string(&created)?);
        }
        TenantCommand::SetAi {
            tenant,
            api_key,
            base_url,
        } => {
            tenants::set_ai_settings(&pool, &key, tenant, api_key.as_deref(), base_url.as_deref()).await?;
            eprintln!("AI settings updated for tenant {tenant}");
        }
    }
    Ok(())
}

/// `leadflow queues`: a table, one queue per line.
async fn queues(cfg: &Config) -> anyhow::Result<()> {
    let queues = leadflow_shared::queue::Queues::connect(&cfg.redis, &cfg.queue_prefix).await?;
    let rows = leadflow_shared::queue::summaries(&queues).await?;
    println!(
        "{:<10} {:>8} {:>7} {:>8} {:>7} {:>7} {:>12} {:>8}",
        "queue", "waiting", "active", "delayed", "failed", "paused", "oldest_wait", "workers"
    );
    for r in rows {
        let oldest = r.oldest_waiting_seconds.map_or("-".to_owned(), |s| format!("{s:.1}s"));
        println!(
            "{:<10} {:>8} {:>7} {:>8} {:>7} {:>7} {:>12} {:>8}",
            r.queue, r.waiting, r.active, r.delayed, r.failed, r.paused, oldest, r.workers
        );
    }
    Ok(())
}

/// `leadflow failures …`, against PostgreSQL (and Redis for a retry's job) directly.
async fn failures(cfg: &mut Config, command: FailuresCommand) -> anyhow::Result<()> {
    use leadflow_shared::db::failures::{self, FailureKind, Filter};
    let kind_of =
        |k: &str| FailureKind::parse(k).with_context(|| format!("unknown kind {k:?} ({})", FailureKind::names()));
    let pool = db::connect_for_role(cfg).await?;
    match command {
        FailuresCommand::List { kind, tenant, q, limit } => {
            let filter = Filter {
                kind: kind.as_deref().map(kind_of).transpose()?,
                tenant_id: tenant,
                q,
                limit: limit.clamp(1, 10_000),
                ..Filter::default()
            };
            for f in failures::list(&pool, &filter).await? {
                println!("{}", serde_json::to_string(&f)?);
            }
        }
        FailuresCommand::Retry { kind, id } => {
            let kind = kind_of(&kind)?;
            let key = cfg.resolve_master_key()?;
            let reopened = failures::retry(&pool, &key, kind, id)
                .await?
                .with_context(|| format!("no {} failure {id} to retry", kind.as_str()))?;
            let queues = leadflow_shared::queue::Queues::connect(&cfg.redis, &cfg.queue_prefix).await?;
            reopened.enqueue(&queues).await?;
            println!("{}", serde_json::json!({"retried": kind, "id": id}));
        }
        FailuresCommand::Discard { kind, id } => {
            let kind = kind_of(&kind)?;
            if !failures::discard(&pool, kind, id).await? {
                anyhow::bail!("no {} failure {id} to discard", kind.as_str());
            }
            println!("{}", serde_json::json!({"discarded": kind, "id": id}));
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `leadflow healthcheck`: needs nothing but the address (a probe must not fail on a
/// setting it does not use).
/// `leadflow config check`: one `VAR=value  # source` line per setting (a file an
/// operator can diff between hosts), secrets masked.
fn config_check() -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (cfg, settings) = match Config::check(&env) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            std::process::exit(1)
        }
    };
    println!("# the configuration is valid");
    for s in settings {
        let note = match (&s.shown, s.var) {
            (None, "LEADFLOW_MASTER_KEY") => {
                format!("not set: dev uses {}", cfg.data_dir.join("master.key").display())
            }
            _ => s.source.to_string(),
        };
        println!("{}={}  # {note}", s.var, s.shown.unwrap_or_default());
    }
    Ok(())
}

async fn healthcheck(url: Option<&str>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let addr = std::env::var("LEADFLOW_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
            let port = addr.rsplit(':').next().unwrap_or("8080");
            format!("http://127.0.0.1:{port}/readyz")
        }
    };
    let answer = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!("{url}: {status} {body}");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Operators script `--queues` from the help: it must name every queue there is.
    #[test]
    fn the_queues_help_names_every_queue() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("worker")
            .expect("worker")
            .render_long_help()
            .to_string();
        for kind in QueueKind::ALL {
            assert!(
                help.contains(kind.name()),
                "--queues help leaves out {}: {help}",
                kind.name()
            );
        }
    }
}
