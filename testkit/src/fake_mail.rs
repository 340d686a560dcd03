//! A fake mail provider: a minimal SMTP server (what Leadflow sends through `lettre`)
//! and a minimal IMAP4rev1 server (what Leadflow polls through `async-imap`), both
//! plaintext on 127.0.0.1 with OS-assigned ports. Real providers can't be used in tests,
//! and mocking the client crates would hide the protocol bugs we care about, so these
//! speak the wire protocols faithfully enough for the real clients: SMTP dot-unstuffing,
//! AUTH PLAIN/LOGIN, IMAP synchronizing (`{n}`) and non-synchronizing (`{n+}`) literals,
//! quoted strings, UID vs sequence-number sets, `\Seen` set by non-PEEK body fetches —
//! and the classic `n:*` quirk: `*` is the largest UID and `n:m` equals `m:n`, so
//! `UID SEARCH UID 7:*` still matches the newest message when every UID is below 7. The
//! client has to filter that out; a lenient fake would hide the bug.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message received over SMTP.
#[derive(Debug, Clone)]
pub struct SentMail {
    /// The user from AUTH PLAIN / AUTH LOGIN, if the client authenticated.
    pub auth_user: Option<String>,
    /// The address inside `MAIL FROM:<...>`.
    pub from: String,
    /// Every `RCPT TO:<...>` address.
    pub to: Vec<String>,
    /// The DATA payload, dot-unstuffed, without the terminating `.`, CRLF line ends.
    pub data: String,
}

impl SentMail {
    /// The first header called `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for line in split_message(&self.data).0.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                // A continuation line of the header we are collecting (if any).
                if let Some(v) = found.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if found.is_some() {
                break;
            } else if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found.map(|v| v.trim().to_string())
    }

    /// Everything after the first empty line, as is.
    pub fn body(&self) -> String {
        split_message(&self.data).1.to_string()
    }
}

/// Splits an RFC 822 message (CRLF line ends) into header block and body.
fn split_message(data: &str) -> (&str, &str) {
    if let Some(body) = data.strip_prefix("\r\n") {
        return ("", body);
    }
    match data.find("\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => (data, ""),
    }
}

/// A message in the fake INBOX.
struct Stored {
    uid: u32,
    raw: String,
    flags: Vec<String>,
}

impl Stored {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    fn add(&mut self, flag: &str) {
        if !self.has(flag) {
            self.flags.push(flag.to_string());
        }
    }
}

#[derive(Default)]
struct State {
    user: String,
    password: String,
    sent: Vec<SentMail>,
    /// In UID order (UIDs only grow), so index + 1 is the sequence number.
    inbox: Vec<Stored>,
    next_uid: u32,
    logins_ok: usize,
    logins_failed: usize,
}

impl State {
    /// What `*` means in a set: the largest UID, or the largest sequence number.
    fn star(&self, uid: bool) -> u32 {
        if uid {
            self.inbox.last().map_or(0, |m| m.uid)
        } else {
            self.inbox.len() as u32
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct FakeMail {
    pub host: String,
    pub smtp_port: u16,
    pub imap_port: u16,
    state: Arc<Mutex<State>>,
    /// The two accept loops, aborted on drop so the ports close with the test.
    tasks: Vec<JoinHandle<()>>,
}

impl FakeMail {
    /// Starts both servers; both check `user`/`password` (SMTP AUTH, IMAP LOGIN). SMTP
    /// also takes mail without AUTH, like a lenient relay.
    pub async fn start(user: &str, password: &str) -> FakeMail {
        let state = Arc::new(Mutex::new(State {
            user: user.to_string(),
            password: password.to_string(),
            next_uid: 1,
            ..State::default()
        }));
        let smtp = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let imap = TcpListener::bind("127.0.0.1:0").await.expect("bind imap");
        let smtp_port = smtp.local_addr().expect("smtp addr").port();
        let imap_port = imap.local_addr().expect("imap addr").port();
        let smtp_state = state.clone();
        let imap_state = state.clone();
        let tasks = vec![
            tokio::spawn(async move {
                while let Ok((stream, _)) = smtp.accept().await {
                    let state = smtp_state.clone();
                    tokio::spawn(async move {
                        let _ = smtp_session(stream, state).await;
                    });
                }
            }),
            tokio::spawn(async move {
                while let Ok((stream, _)) = imap.accept().await {
                    let state = imap_state.clone();
                    tokio::spawn(async move {
                        let _ = imap_session(stream, state).await;
                    });
                }
            }),
        ];
        FakeMail {
            host: "127.0.0.1".to_string(),
            smtp_port,
            imap_port,
            state,
            tasks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Appends a raw message to INBOX (line ends normalised to CRLF); returns its UID.
    pub fn deliver(&self, raw: &str) -> u32 {
        let raw = raw.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut st = self.lock();
        let uid = st.next_uid;
        st.next_uid += 1;
        st.inbox.push(Stored {
            uid,
            raw,
            flags: Vec::new(),
        });
        uid
    }

    pub fn sent(&self) -> Vec<SentMail> {
        self.lock().sent.clone()
    }

    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<SentMail> {
        crate::wait_for_count(
            n,
            timeout,
            || self.sent(),
            |got| format!("expected {n} mails over SMTP within {timeout:?}, got {}", got.len()),
        )
        .await
    }

    /// (successful, failed) IMAP LOGINs.
    pub fn imap_logins(&self) -> (usize, usize) {
        let st = self.lock();
        (st.logins_ok, st.logins_failed)
    }

    /// UIDs flagged `\Seen`.
    pub fn seen(&self) -> Vec<u32> {
        self.lock()
            .inbox
            .iter()
            .filter(|m| m.has("\\Seen"))
            .map(|m| m.uid)
            .collect()
    }
}

impl Drop for FakeMail {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

type Reader = BufReader<OwnedReadHalf>;

/// One line without its CRLF (bare LF tolerated); None at EOF.
async fn read_line(r: &mut Reader) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

async fn send(w: &mut OwnedWriteHalf, s: &str) -> io::Result<()> {
    w.write_all(s.as_bytes()).await?;
    w.flush().await
}

async fn prompt(r: &mut Reader, w: &mut OwnedWriteHalf, ask: &str) -> io::Result<String> {
    send(w, ask).await?;
    Ok(read_line(r).await?.unwrap_or_default())
}

fn decode_b64(s: &str) -> String {
    STANDARD
        .decode(s.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The address in `FROM:<a@b> SIZE=1` / `TO:<a@b>` (bare addresses tolerated).
fn angle_addr(s: &str) -> String {
    let s = s.split_once(':').map_or(s, |(_, a)| a).trim_start();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
        _ => s.split_whitespace().next().unwrap_or("").to_string(),
    }
}

async fn smtp_session(stream: TcpStream, state: Arc<Mutex<State>>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    send(&mut w, "220 fake-mail ESMTP\r\n").await?;
    let mut auth_user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut r).await? {
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            // No STARTTLS on purpose: the client must work over plaintext here.
            "EHLO" => "250-fake-mail\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n\
                       250-SMTPUTF8\r\n250 SIZE 35882577\r\n"
                .into(),
            "HELO" => "250 fake-mail\r\n".into(),
            "AUTH" => {
                let mut parts = rest.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                // RFC 4954 initial response on the AUTH line, if any.
                let initial = parts.next().map(str::to_string);
                let creds = match mech.as_str() {
                    "PLAIN" => {
                        let b64 = match initial {
                            Some(b64) => b64,
                            None => prompt(&mut r, &mut w, "334 \r\n").await?,
                        };
                        // authzid \0 user \0 password
                        let plain = decode_b64(&b64);
                        let mut fields = plain.split('\0').skip(1);
                        let user = fields.next().unwrap_or("").to_string();
                        Some((user, fields.next().unwrap_or("").to_string()))
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(b64) => b64,
                            None => prompt(&mut r, &mut w, "334 VXNlcm5hbWU6\r\n").await?,
                        };
                        let pass = prompt(&mut r, &mut w, "334 UGFzc3dvcmQ6\r\n").await?;
                        Some((decode_b64(&user), decode_b64(&pass)))
                    }
                    _ => None,
                };
                match creds {
                    None => "504 5.5.4 Unrecognized authentication type\r\n".into(),
                    Some((user, pass)) => {
                        let ok = {
                            let st = lock(&state);
                            st.user == user && st.password == pass
                        };
                        if ok {
                            auth_user = Some(user);
                            "235 2.7.0 Authentication successful\r\n".into()
                        } else {
                            "535 5.7.8 Authentication credentials invalid\r\n".into()
                        }
                    }
                }
            }
            "MAIL" => {
                from = Some(angle_addr(rest));
                to.clear();
                "250 2.1.0 OK\r\n".into()
            }
            "RCPT" => {
                to.push(angle_addr(rest));
                "250 2.1.5 OK\r\n".into()
            }
            "DATA" => {
                send(&mut w, "354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let Some(line) = read_line(&mut r).await? else {
                        return Ok(());
                    };
                    if line == "." {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 §4.5.2): the client doubled leading dots.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push_str("\r\n");
                }
                let mail = SentMail {
                    auth_user: auth_user.clone(),
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                lock(&state).sent.push(mail);
                "250 2.0.0 OK queued\r\n".into()
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => return send(&mut w, "221 2.0.0 Bye\r\n").await,
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        send(&mut w, &reply).await?;
    }
    Ok(())
}

/// `{n}` / `{n+}` at the end of a line: (position of `{`, n, synchronizing).
fn literal_marker(line: &str) -> Option<(usize, usize, bool)> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix('+') {
        Some(d) => (d, false),
        None => (spec, true),
    };
    Some((open, digits.parse::<usize>().ok()?, sync))
}

/// Splits IMAP arguments: quoted strings are unescaped; atoms keep `[...]` sections and
/// `(...)` lists whole (raw), so `BODY.PEEK[HEADER.FIELDS (FROM)]` is one token.
fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut tok = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => tok.extend(chars.next()),
                    '"' => break,
                    _ => tok.push(c),
                }
            }
            out.push(tok);
        } else {
            let (mut tok, mut depth) = (String::new(), 0i32);
            while let Some(&c) = chars.peek() {
                if c == ' ' && depth <= 0 {
                    break;
                }
                match c {
                    '(' | '[' => depth += 1,
                    ')' | ']' => depth -= 1,
                    _ => {}
                }
                tok.push(c);
                chars.next();
            }
            out.push(tok);
        }
    }
    out
}

/// Reads one full command, literals included (each literal becomes one token).
async fn read_command(r: &mut Reader, w: &mut OwnedWriteHalf) -> io::Result<Option<Vec<String>>> {
    let mut tokens = Vec::new();
    loop {
        let Some(line) = read_line(r).await? else {
            return Ok(None);
        };
        let marker = literal_marker(&line);
        tokens.extend(tokenize(&line[..marker.map_or(line.len(), |(open, _, _)| open)]));
        let Some((_, n, sync)) = marker else {
            return Ok(Some(tokens));
        };
        if sync {
            send(w, "+ Ready\r\n").await?;
        }
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf).await?;
        tokens.push(String::from_utf8_lossy(&buf).into_owned());
    }
}

/// The items of a parenthesised list (or a single atom).
fn list_items(args: &[String]) -> Vec<String> {
    let joined = args.join(" ");
    let inner = joined.strip_prefix('(').and_then(|s| s.strip_suffix(')'));
    tokenize(inner.unwrap_or(&joined))
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map_or("", |s| s.as_str())
}

/// A sequence set as inclusive ranges. `*` is `star`, and `n:m` is normalised to
/// `min:max` — which is why `7:*` matches the last message even when it is below 7.
fn parse_set(set: &str, star: u32) -> Vec<(u32, u32)> {
    let num = |s: &str| if s == "*" { Some(star) } else { s.parse::<u32>().ok() };
    set.split(',')
        .filter_map(|item| {
            let (a, b) = match item.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(item)?, num(item)?),
            };
            Some((a.min(b), a.max(b)))
        })
        .collect()
}

fn in_set(set: &[(u32, u32)], x: u32) -> bool {
    set.iter().any(|&(a, b)| a <= x && x <= b)
}

fn literal(name: &str, s: &str) -> String {
    format!("{name} {{{}}}\r\n{s}", s.len())
}

enum Crit {
    Uid(Vec<(u32, u32)>),
    Seq(Vec<(u32, u32)>),
    Seen(bool),
}

/// SEARCH: criteria are ANDed; `ALL` and unsupported keys match everything.
fn search(st: &State, args: &[String], uid: bool) -> Vec<u32> {
    let words: Vec<String> = args.iter().flat_map(|a| list_items(std::slice::from_ref(a))).collect();
    let mut crits = Vec::new();
    let mut it = words.iter();
    while let Some(key) = it.next() {
        let key = key.to_ascii_uppercase();
        match key.as_str() {
            "UID" => crits.push(Crit::Uid(parse_set(
                it.next().map_or("", |s| s.as_str()),
                st.star(true),
            ))),
            "SEEN" => crits.push(Crit::Seen(true)),
            "UNSEEN" => crits.push(Crit::Seen(false)),
            // Keys with one argument we don't evaluate: skip the argument too.
            "CHARSET" | "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" | "BODY" | "TEXT" | "SINCE" | "BEFORE" | "ON"
            | "SENTSINCE" | "SENTBEFORE" | "SENTON" | "LARGER" | "SMALLER" | "KEYWORD" | "UNKEYWORD" => {
                it.next();
            }
            "HEADER" => {
                it.next();
                it.next();
            }
            k if k.starts_with(|c: char| c.is_ascii_digit() || c == '*') => {
                crits.push(Crit::Seq(parse_set(k, st.star(false))))
            }
            _ => {}
        }
    }
    st.inbox
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            crits.iter().all(|c| match c {
                Crit::Uid(set) => in_set(set, m.uid),
                Crit::Seq(set) => in_set(set, *i as u32 + 1),
                Crit::Seen(want) => m.has("\\Seen") == *want,
            })
        })
        .map(|(i, m)| if uid { m.uid } else { i as u32 + 1 })
        .collect()
}

/// FETCH responses. ENVELOPE is answered with all fields NIL (syntactically valid);
/// of the body sections only `BODY[]`, `BODY[HEADER]` and `BODY[TEXT]` are answered
/// (`HEADER.FIELDS` and partial ranges are ignored or answered whole).
fn fetch(st: &mut State, set: &str, items: &[String], uid: bool) -> String {
    let set = parse_set(set, st.star(uid));
    let marks_seen = items
        .iter()
        .any(|i| i.starts_with("BODY[") || i == "RFC822" || i == "RFC822.TEXT");
    let mut out = String::new();
    for (i, m) in st.inbox.iter_mut().enumerate() {
        let seq = i as u32 + 1;
        if !in_set(&set, if uid { m.uid } else { seq }) {
            continue;
        }
        if marks_seen {
            m.add("\\Seen");
        }
        let (head, text) = split_message(&m.raw);
        let mut parts = Vec::new();
        // A UID FETCH response always carries the UID (RFC 3501 §6.4.8).
        if uid && !items.iter().any(|i| i == "UID") {
            parts.push(format!("UID {}", m.uid));
        }
        for item in items {
            let (name, section) = match item.split_once('[') {
                Some((name, rest)) => (name, rest.split(']').next().unwrap_or("")),
                None => (item.as_str(), ""),
            };
            parts.push(match (name, section) {
                ("UID", _) => format!("UID {}", m.uid),
                ("FLAGS", _) => format!("FLAGS ({})", m.flags.join(" ")),
                ("RFC822.SIZE", _) => format!("RFC822.SIZE {}", m.raw.len()),
                ("INTERNALDATE", _) => "INTERNALDATE \"01-Jan-2024 00:00:00 +0000\"".to_string(),
                ("ENVELOPE", _) => "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_string(),
                ("RFC822", _) => literal("RFC822", &m.raw),
                ("RFC822.HEADER", _) => literal("RFC822.HEADER", &format!("{head}\r\n\r\n")),
                ("RFC822.TEXT", _) => literal("RFC822.TEXT", text),
                ("BODY" | "BODY.PEEK", "HEADER") => literal("BODY[HEADER]", &format!("{head}\r\n\r\n")),
                ("BODY" | "BODY.PEEK", "TEXT") => literal("BODY[TEXT]", text),
                ("BODY" | "BODY.PEEK", "") if item.contains('[') => literal("BODY[]", &m.raw),
                _ => continue,
            });
        }
        out += &format!("* {seq} FETCH ({})\r\n", parts.join(" "));
    }
    out
}

/// STORE: `+FLAGS`, `-FLAGS`, `FLAGS`, each optionally `.SILENT`.
fn store(st: &mut State, set: &str, op: &str, flags: &[String], uid: bool) -> String {
    let op = op.to_ascii_uppercase();
    let set = parse_set(set, st.star(uid));
    let mut out = String::new();
    for (i, m) in st.inbox.iter_mut().enumerate() {
        let seq = i as u32 + 1;
        if !in_set(&set, if uid { m.uid } else { seq }) {
            continue;
        }
        if op.starts_with('-') {
            m.flags
                .retain(|have| !flags.iter().any(|f| f.eq_ignore_ascii_case(have)));
        } else {
            if !op.starts_with('+') {
                m.flags.clear();
            }
            for f in flags {
                m.add(f);
            }
        }
        if !op.ends_with(".SILENT") {
            let uid_part = if uid { format!("UID {} ", m.uid) } else { String::new() };
            out += &format!("* {seq} FETCH ({uid_part}FLAGS ({}))\r\n", m.flags.join(" "));
        }
    }
    out
}

#[derive(Default)]
struct Session {
    authed: bool,
    selected: bool,
}

/// Everything a command answers (untagged lines and the tagged completion).
fn imap_reply(state: &Mutex<State>, sess: &mut Session, tag: &str, cmd: &str, uid: bool, args: &[String]) -> String {
    let mut st = lock(state);
    let ok = |what: &str| format!("{tag} OK {what} completed\r\n");
    match cmd {
        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS\r\n{}", ok(cmd)),
        "NOOP" | "CHECK" => ok(cmd),
        "LOGOUT" => format!("* BYE logging out\r\n{}", ok(cmd)),
        "LOGIN" => {
            if args.len() == 2 && arg(args, 0) == st.user && arg(args, 1) == st.password {
                st.logins_ok += 1;
                sess.authed = true;
                ok(cmd)
            } else {
                st.logins_failed += 1;
                format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            }
        }
        _ if !sess.authed => format!("{tag} NO not authenticated\r\n"),
        "SELECT" | "EXAMINE" => {
            if !arg(args, 0).eq_ignore_ascii_case("INBOX") {
                return format!("{tag} NO [NONEXISTENT] no such mailbox\r\n");
            }
            sess.selected = true;
            let mode = if cmd == "SELECT" { "READ-WRITE" } else { "READ-ONLY" };
            format!(
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* {} EXISTS\r\n\
                 * 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n\
                 * OK [UIDNEXT {}] Predicted next UID\r\n{tag} OK [{mode}] {cmd} completed\r\n",
                st.inbox.len(),
                st.next_uid,
            )
        }
        "CLOSE" | "UNSELECT" => {
            sess.selected = false;
            ok(cmd)
        }
        "EXPUNGE" => ok(cmd),
        "SEARCH" | "FETCH" | "STORE" if !sess.selected => format!("{tag} BAD no mailbox selected\r\n"),
        "SEARCH" => {
            let hits: String = search(&st, args, uid).iter().map(|n| format!(" {n}")).collect();
            format!("* SEARCH{hits}\r\n{}", ok(cmd))
        }
        "FETCH" if args.len() >= 2 => {
            let items: Vec<String> = list_items(&args[1..])
                .into_iter()
                .flat_map(|i| {
                    let i = i.to_ascii_uppercase();
                    if matches!(i.as_str(), "FAST" | "ALL" | "FULL") {
                        vec![
                            "FLAGS".to_string(),
                            "INTERNALDATE".to_string(),
                            "RFC822.SIZE".to_string(),
                        ]
                    } else {
                        vec![i]
                    }
                })
                .collect();
            format!("{}{}", fetch(&mut st, arg(args, 0), &items, uid), ok(cmd))
        }
        "STORE" if args.len() >= 3 => {
            let flags = list_items(&args[2..]);
            format!("{}{}", store(&mut st, arg(args, 0), arg(args, 1), &flags, uid), ok(cmd))
        }
        "FETCH" | "STORE" => format!("{tag} BAD missing arguments\r\n"),
        _ => format!("{tag} BAD unknown command\r\n"),
    }
}

async fn imap_session(stream: TcpStream, state: Arc<Mutex<State>>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    send(&mut w, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake-mail ready\r\n").await?;
    let mut sess = Session::default();
    while let Some(tokens) = read_command(&mut r, &mut w).await? {
        let Some((tag, rest)) = tokens.split_first() else {
            continue;
        };
        let mut cmd = rest.first().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
        let mut args = rest.get(1..).unwrap_or_default();
        let uid = cmd == "UID";
        if uid {
            cmd = args.first().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
            args = args.get(1..).unwrap_or_default();
        }
        let reply = imap_reply(&state, &mut sess, tag, &cmd, uid, args);
        send(&mut w, &reply).await?;
        if cmd == "LOGOUT" {
            return Ok(());
        }
    }
    Ok(())
}
