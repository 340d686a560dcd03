//! Configuration as a container platform hands it over: secrets in files named by
//! `_FILE` variables (Docker and Kubernetes secrets), checked by `leadflow config check`,
//! which prints the effective settings with every secret masked.

use crate::support::TestApp;

fn setting<'a>(app: &'a TestApp, var: &str) -> &'a str {
    &app.env.iter().find(|(k, _)| k == var).unwrap().1
}

#[tokio::test]
async fn secrets_come_from_files_and_config_check_never_prints_them() {
    let app = TestApp::start().await;
    let dir = std::env::temp_dir().join(format!("leadflow-secrets-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_file = dir.join("database_url");
    let key_file = dir.join("master_key");
    let master_key = setting(&app, "LEADFLOW_MASTER_KEY").to_owned();
    // As `echo … > file` and editors write them: with a trailing newline.
    std::fs::write(&db_file, format!("{}\n", setting(&app, "LEADFLOW_DATABASE_URL"))).unwrap();
    std::fs::write(&key_file, format!("{master_key}\n")).unwrap();
    let from_files = |args: &[&str]| {
        app.leadflow_command()
            .env_remove("LEADFLOW_DATABASE_URL")
            .env_remove("LEADFLOW_MASTER_KEY")
            .env("LEADFLOW_DATABASE_URL_FILE", &db_file)
            .env("LEADFLOW_MASTER_KEY_FILE", &key_file)
            .args(args)
            .output()
            .unwrap()
    };

    // A role reaches its database through the file's URL. (Blocking this thread briefly
    // is fine: nothing here waits on the app it also runs.)
    let migrate = from_files(&["migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let check = from_files(&["config", "check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let line = |var: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no {var} line in:\n{out}"))
            .to_owned()
    };
    assert_eq!(
        line("LEADFLOW_MASTER_KEY"),
        format!("LEADFLOW_MASTER_KEY=****  # secret file {}", key_file.display())
    );
    assert_eq!(line("LEADFLOW_AI_API_KEY"), "LEADFLOW_AI_API_KEY=****  # environment");
    assert_eq!(
        line("LEADFLOW_SWEEP_INTERVAL"),
        "LEADFLOW_SWEEP_INTERVAL=1s  # environment"
    );
    assert_eq!(
        line("LEADFLOW_POSTBACK_TIMEOUT"),
        "LEADFLOW_POSTBACK_TIMEOUT=5s  # environment"
    );
    assert_eq!(line("LEADFLOW_TYPING_DELAY"), "LEADFLOW_TYPING_DELAY=1.5s  # default");
    assert!(line("LEADFLOW_DATABASE_URL").ends_with(&format!("# secret file {}", db_file.display())));
    let everything = format!("{out}{}", String::from_utf8_lossy(&check.stderr));
    assert!(!everything.contains(&master_key), "the master key is never printed");
    assert!(!everything.contains("sk-test"), "the AI key is never printed");

    // A secret set twice is ambiguous; a bad value names its variable; both exit 1.
    let twice = app
        .leadflow_command()
        .env("LEADFLOW_MASTER_KEY_FILE", &key_file)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(twice.status.code(), Some(1));
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(
        said.contains("LEADFLOW_MASTER_KEY_FILE: set either LEADFLOW_MASTER_KEY or LEADFLOW_MASTER_KEY_FILE"),
        "{said}"
    );
    let bad = app
        .leadflow_command()
        .env("LEADFLOW_SYNC_TIMEOUT", "soon")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LEADFLOW_SYNC_TIMEOUT"));
    std::fs::remove_dir_all(dir).unwrap();
    app.stop().await;
}
