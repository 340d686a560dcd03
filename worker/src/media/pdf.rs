//! PDF text, extracted locally (`lopdf` + `pdf-extract`), never by a service. Caps on
//! pages and characters keep a 300-page contract from flooding the model's context; a
//! PDF whose pages carry no text at all is a scan and is reported as such.
//!
//! lopdf inflates streams without a limit: a 1 MB file can expand to gigabytes, and a
//! failed allocation aborts the whole process, with every other job in flight. So a PDF
//! is read in a child process ([`extract`] runs `<leadflow> pdf-extract`, see
//! [`child_main`]) under a hard address-space limit (`RLIMIT_AS`,
//! `LEADFLOW_PDF_MEMORY_LIMIT`), a CPU limit and a wall-clock timeout
//! (`LEADFLOW_PDF_TIMEOUT`). A child that dies, overruns or answers nonsense makes the
//! medium "PDF could not be read"; the worker is untouched. The child gets the file on
//! stdin and no environment (no secrets), and answers one JSON value on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use pdf_extract::{output_doc_page, PlainTextOutput};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The internal subcommand the child runs.
pub const CHILD_COMMAND: &str = "pdf-extract";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdfText {
    pub text: String,
    pub pages: u32,
    pub pages_read: u32,
    /// Pages or characters were left out.
    pub truncated: bool,
}

impl PdfText {
    /// Pages, but not a single character of text: a scanned document.
    pub fn no_text(&self) -> bool {
        self.pages > 0 && self.text.trim().is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum PdfError {
    #[error("the file is not a readable PDF: {0}")]
    Corrupt(String),
    #[error("the PDF is password-protected")]
    Encrypted,
    /// The extraction ran out of memory or time, or died: a hostile or pathological file.
    #[error("PDF could not be read ({0})")]
    Unreadable(String),
}

/// Where and under which limits a PDF is read.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The `leadflow` executable (it has the [`CHILD_COMMAND`] subcommand).
    pub program: PathBuf,
    pub memory_limit: u64,
    pub timeout: Duration,
}

impl Sandbox {
    pub fn from_config(m: &leadflow_shared::config::MediaConfig) -> std::io::Result<Self> {
        Ok(Self {
            program: match &m.pdf_extractor {
                Some(p) => p.clone(),
                None => std::env::current_exe()?,
            },
            memory_limit: m.pdf_memory_limit,
            timeout: m.pdf_timeout,
        })
    }
}

/// Extracts up to `max_pages` pages and `max_chars` characters in a child process under
/// the sandbox's limits.
pub async fn extract(sandbox: &Sandbox, bytes: &[u8], max_pages: u32, max_chars: usize) -> Result<PdfText, PdfError> {
    let unreadable = |why: &str| PdfError::Unreadable(why.to_string());
    let mut child = tokio::process::Command::new(&sandbox.program)
        .arg(CHILD_COMMAND)
        .arg(max_pages.to_string())
        .arg(max_chars.to_string())
        .arg(sandbox.memory_limit.to_string())
        .arg(sandbox.timeout.as_secs().max(1).to_string())
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(program = %sandbox.program.display(), error = %e, "the PDF extractor cannot be started");
            unreadable("the extractor could not start")
        })?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(unreadable("the extractor has no pipes"));
    };
    // Text is at most max_chars characters (4 bytes each in UTF-8) plus the envelope.
    let answer_cap = (max_chars as u64).saturating_mul(4).saturating_add(64 * 1024);
    let run = async {
        // A child that dies while reading its input closes the pipe: that is its answer.
        let _ = stdin.write_all(bytes).await;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout)
            .take(answer_cap.saturating_add(1))
            .read_to_end(&mut out)
            .await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    };
    let (status, out) = match tokio::time::timeout(sandbox.timeout, run).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => return Err(unreadable("the extractor failed")),
        Err(_) => return Err(unreadable("it took too long")),
    };
    if !status.success() || out.len() as u64 > answer_cap {
        return Err(unreadable(if status.success() {
            "the extractor answered too much"
        } else {
            "it needs too much memory or is malformed"
        }));
    }
    serde_json::from_slice::<Result<PdfText, PdfError>>(&out).unwrap_or_else(|_| Err(unreadable("no answer")))
}

/// The child's side (`leadflow pdf-extract MAX_PAGES MAX_CHARS MEMORY_LIMIT CPU_SECONDS`):
/// limits itself, reads the PDF from stdin, writes `Result<PdfText, PdfError>` as JSON to
/// stdout. Runs before any runtime or thread starts. Returns the process exit code.
pub fn child_main(args: &[String]) -> i32 {
    let [max_pages, max_chars, memory, cpu] = args else {
        return 2;
    };
    let (Ok(max_pages), Ok(max_chars), Ok(memory), Ok(cpu)) = (
        max_pages.parse::<u32>(),
        max_chars.parse::<usize>(),
        memory.parse::<u64>(),
        cpu.parse::<u64>(),
    ) else {
        return 2;
    };
    use rlimit::Resource;
    if Resource::AS.set(memory, memory).is_err() || Resource::CPU.set(cpu, cpu + 1).is_err() {
        return 3;
    }
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return 4;
    }
    let result = std::panic::catch_unwind(|| extract_sync(&input, max_pages, max_chars))
        .unwrap_or_else(|_| Err(PdfError::Corrupt("the parser failed".into())));
    let Ok(json) = serde_json::to_vec(&result) else {
        return 5;
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&json).and_then(|()| out.flush()).is_err() {
        return 6;
    }
    0
}

pub fn extract_sync(bytes: &[u8], max_pages: u32, max_chars: usize) -> Result<PdfText, PdfError> {
    let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| PdfError::Corrupt(e.to_string()))?;
    if doc.is_encrypted() {
        // Many PDFs are "encrypted" with an empty user password (print/copy flags only).
        doc.decrypt("").map_err(|_| PdfError::Encrypted)?;
    }
    let pages = doc.get_pages();
    let total = pages.len() as u32;
    if total == 0 {
        return Err(PdfError::Corrupt("it has no pages".into()));
    }
    let mut text = String::new();
    let mut chars = 0usize;
    let mut read = 0u32;
    let mut truncated = false;
    for &num in pages.keys().take(max_pages as usize) {
        let mut page = String::new();
        {
            let mut out = PlainTextOutput::new(&mut page);
            if let Err(e) = output_doc_page(&doc, &mut out, num) {
                tracing::debug!(page = num, error = %e, "PDF page without extractable text");
            }
        }
        read += 1;
        let page = tidy(&page);
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let room = max_chars.saturating_sub(chars);
        let n = page.chars().count();
        if n > room {
            text.extend(page.chars().take(room));
            truncated = true;
            break;
        }
        text.push_str(&page);
        chars += n;
    }
    Ok(PdfText {
        text,
        pages: total,
        pages_read: read,
        truncated: truncated || read < total,
    })
}

/// Trims lines and collapses runs of blank lines (layout noise costs tokens).
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line.trim_start());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sandbox running `script` (a shell script standing in for the extractor).
    fn sandbox_running(script: &str, timeout: Duration) -> (Sandbox, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("lf-fake-extractor-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sandbox = Sandbox {
            program: path.clone(),
            memory_limit: 64 << 20,
            timeout,
        };
        (sandbox, path)
    }

    #[tokio::test]
    async fn a_hung_or_dying_extractor_is_unreadable_not_an_error_of_the_job() {
        let pdf = fixture("text.pdf");
        let (hangs, p1) = sandbox_running("sleep 30", Duration::from_millis(300));
        let started = std::time::Instant::now();
        assert_eq!(
            extract(&hangs, &pdf, 5, 100).await,
            Err(PdfError::Unreadable("it took too long".into()))
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the child is killed at the timeout"
        );
        let (dies, p2) = sandbox_running("kill -9 $$", Duration::from_secs(5));
        assert!(matches!(
            extract(&dies, &pdf, 5, 100).await,
            Err(PdfError::Unreadable(_))
        ));
        let (babbles, p3) = sandbox_running("cat >/dev/null; echo not-json", Duration::from_secs(5));
        assert_eq!(
            extract(&babbles, &pdf, 5, 100).await,
            Err(PdfError::Unreadable("no answer".into()))
        );
        let missing = Sandbox {
            program: "/nonexistent/leadflow".into(),
            memory_limit: 64 << 20,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            extract(&missing, &pdf, 5, 100).await,
            Err(PdfError::Unreadable(_))
        ));
        for p in [p1, p2, p3] {
            let _ = std::fs::remove_file(p);
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/media/");
        std::fs::read(format!("{path}{name}")).unwrap()
    }

    #[test]
    fn extracts_multi_page_text_with_accents() {
        let t = extract_sync(&fixture("text.pdf"), 30, 10_000).unwrap();
        assert_eq!(t.pages, 3);
        assert_eq!(t.pages_read, 3);
        assert!(!t.truncated);
        assert!(
            t.text.contains("Comprovante de renda: São Paulo, ação nº 42"),
            "{}",
            t.text
        );
        assert!(t.text.contains("Página dois: financiamento aprovado"), "{}", t.text);
        assert!(t.text.contains("Última página: condomínio e IPTU"), "{}", t.text);
        let p1 = t.text.find("Comprovante").unwrap();
        let p3 = t.text.find("Última").unwrap();
        assert!(p1 < p3, "pages in order");
    }

    #[test]
    fn caps_pages_and_characters() {
        let t = extract_sync(&fixture("text.pdf"), 1, 10_000).unwrap();
        assert_eq!((t.pages, t.pages_read, t.truncated), (3, 1, true));
        assert!(!t.text.contains("Página dois"));
        let t = extract_sync(&fixture("text.pdf"), 30, 20).unwrap();
        assert_eq!(t.text.chars().count(), 20);
        assert!(t.truncated);
    }

    #[test]
    fn a_scan_has_no_text() {
        let t = extract_sync(&fixture("scan.pdf"), 30, 10_000).unwrap();
        assert_eq!(t.pages, 1);
        assert!(t.no_text(), "{:?}", t.text);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        assert!(matches!(extract_sync(&bytes, 30, 1000), Err(PdfError::Corrupt(_))));
    }
}
