//! A real PgBouncer in transaction pooling mode in front of the suite's PostgreSQL, one per
//! test that asks for it, on a free loopback port.
//!
//! sqlx prepares every query as a named statement, which transaction pooling can only
//! carry from PgBouncer 1.21 on (`max_prepared_statements`: PgBouncer tracks them and
//! prepares them again on whichever server a transaction lands). Debian 12 ships 1.18, so
//! `scripts/test` installs Debian 13's package into a small `debootstrap`ped root
//! (`.leadflow/tools/trixie`) when the machine's own is older; this module runs
//! whichever is new enough.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/test` puts Debian 13's PgBouncer when the machine's is too old.
const TRIXIE_ROOT: &str = ".leadflow/tools/trixie";

/// How to run a PgBouncer ≥ 1.21: the machine's own, or the one in the trixie root.
enum Install {
    Host,
    Chroot(PathBuf),
}

fn version_ok(out: &[u8]) -> bool {
    // "PgBouncer 1.24.1"
    let text = String::from_utf8_lossy(out);
    let Some(v) = text.split_whitespace().nth(1) else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 21)
}

fn install() -> Install {
    if let Ok(out) = Command::new("pgbouncer").arg("--version").output() {
        if version_ok(&out.stdout) {
            return Install::Host;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(TRIXIE_ROOT);
    let out = Command::new("chroot")
        .arg(&root)
        .args(["pgbouncer", "--version"])
        .output();
    match out {
        Ok(out) if version_ok(&out.stdout) => Install::Chroot(root),
        _ => panic!(
            "no PgBouncer 1.21 or newer: scripts/test installs one (Debian 13's, into {TRIXIE_ROOT}); \
             run it once, or install pgbouncer ≥ 1.21"
        ),
    }
}

/// `user`'s password for the suite's PostgreSQL (127.0.0.1:5432) in `PGPASSFILE`, or none.
fn backend_password(user: &str) -> String {
    let Some(text) = std::env::var_os("PGPASSFILE").and_then(|f| std::fs::read_to_string(f).ok()) else {
        return String::new();
    };
    ["127.0.0.1", "localhost"]
        .iter()
        .find_map(|host| leadflow_shared::db::pgpass::find(&text, host, "5432", "*", user))
        .unwrap_or_default()
}

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    /// The config directory, as seen from outside a chroot.
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts one in front of `127.0.0.1:5432` for every database (`* =`), transaction
    /// pooling, trusting `root` and `postgres` as the suite's PostgreSQL does.
    pub async fn start() -> Self {
        let install = install();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("leadflow-pgbouncer-{port}");
        // Inside a chroot, its files must be under its root; paths in the ini are the
        // chroot's.
        let (dir, inner) = match &install {
            Install::Host => {
                let d = std::env::temp_dir().join(&name);
                (d.clone(), d)
            }
            Install::Chroot(root) => (root.join("tmp").join(&name), Path::new("/tmp").join(&name)),
        };
        std::fs::create_dir_all(&dir).unwrap();
        // Clients are trusted; PgBouncer logs in to PostgreSQL with these passwords: none
        // where PostgreSQL trusts loopback, the scripts' generated one (`PGPASSFILE`) where
        // it asks for one, as a fresh Debian's does.
        let users: String = ["root", "postgres"]
            .iter()
            .map(|u| format!("\"{u}\" \"{}\"\n", backend_password(u).replace('"', "\"\"")))
            .collect();
        std::fs::write(dir.join("users.txt"), users).unwrap();
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {users}\nadmin_users = root\npool_mode = transaction\n\
             max_prepared_statements = 200\ndefault_pool_size = 20\nmax_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits,options\nlogfile = {log}\npidfile =\n",
            users = inner.join("users.txt").display(),
            log = inner.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let ini = inner.join("pgbouncer.ini");
        // PgBouncer refuses to run as root: `-u` drops to an unprivileged user.
        let mut cmd = match &install {
            Install::Host => Command::new("pgbouncer"),
            Install::Chroot(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg("pgbouncer");
                c
            }
        };
        let running_as_root = std::env::var("USER").as_deref() == Ok("root")
            || Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if running_as_root {
            // The files must be readable (and the log writable) by that user.
            let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(&dir).status();
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbouncer starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "pgbouncer did not listen on {port}: {log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, child, dir }
    }

    /// `postgres://127.0.0.1:<port>` (the server part of a database URL).
    pub fn server(&self) -> String {
        format!("postgres://root@127.0.0.1:{}", self.port)
    }

    /// One admin console command (`SHOW STATS`, …) through psql: a header line, then one
    /// line per row, `|`-separated.
    pub fn admin(&self, command: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "root",
                "-d",
                "pgbouncer",
            ])
            .args(["-A", "-P", "footer=off", "-F", "|", "-c", command])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
