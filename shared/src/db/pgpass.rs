//! The password `scripts/run` and `scripts/test` generated for a local role.
//!
//! Debian's PostgreSQL asks for a password on TCP, and a role those scripts create has
//! none, so they give it one and keep it in `.leadflow/pgpass` (PostgreSQL's password-file
//! format). The scripts export `PGPASSFILE` for what they start; this lookup is for the
//! commands a user types afterwards in another shell (`leadflow tenant create …`), so
//! that the README's steps work with a password-free `LEADFLOW_DATABASE_URL`. It applies
//! only when the URL carries no password and `PGPASSFILE` is not set (then sqlx reads it).

use std::path::Path;

use sqlx::postgres::PgConnectOptions;

/// The password `file` holds for the connection `opts` describe (parsed from `url`), if
/// the URL has none itself.
pub fn lookup(file: &Path, url: &str, opts: &PgConnectOptions) -> Option<String> {
    if std::env::var_os("PGPASSFILE").is_some() || url::Url::parse(url).ok()?.password().is_some() {
        return None;
    }
    let port = opts.get_port().to_string();
    let database = opts.get_database().unwrap_or_default();
    find(
        &std::fs::read_to_string(file).ok()?,
        opts.get_host(),
        &port,
        database,
        opts.get_username(),
    )
}

/// The first line of a password file matching every field (`*` matches anything).
pub fn find(text: &str, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields = split(l);
            let [h, p, d, u, password] = <[String; 5]>::try_from(fields).ok()?;
            let fits = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            (fits(&h, host) && fits(&p, port) && fits(&d, database) && fits(&u, user)).then_some(password)
        })
        .next()
}

/// Splits a line on unescaped `:`; `\:` and `\\` are a literal colon and backslash.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "127.0.0.1:5432:*:root:s3cret\nlocalhost:5432:*:ro\\:ot:c\\\\d\n";

    #[test]
    fn matches_host_port_and_user_with_escapes() {
        assert_eq!(
            find(FILE, "127.0.0.1", "5432", "leadflow", "root").as_deref(),
            Some("s3cret")
        );
        assert_eq!(find(FILE, "localhost", "5432", "x", "ro:ot").as_deref(), Some("c\\d"));
        assert_eq!(find(FILE, "localhost", "5432", "x", "root"), None);
        assert_eq!(find(FILE, "127.0.0.1", "5433", "x", "root"), None);
        assert_eq!(find("# comment\nbroken line\n", "h", "1", "d", "u"), None);
    }

    #[test]
    fn a_url_with_its_own_password_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("leadflow-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, FILE).unwrap();
        let at = |url: &str| lookup(&file, url, &url.parse().unwrap());
        if std::env::var_os("PGPASSFILE").is_none() {
            assert_eq!(at("postgres://root@127.0.0.1:5432/leadflow").as_deref(), Some("s3cret"));
        }
        assert_eq!(at("postgres://root:mine@127.0.0.1:5432/leadflow"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
