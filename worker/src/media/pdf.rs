//! PDF text, extracted locally (`lopdf` + `pdf-extract`), never by a service. Caps on
//! pages and characters keep a 300-page contract from flooding the model's context; a
//! PDF whose pages carry no text at all is a scan and is reported as such. CPU-bound and
//! panicky on hostile files, so callers run it on the blocking pool (see [`extract`]).

use pdf_extract::{output_doc_page, PlainTextOutput};

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the file is not a readable PDF: {0}")]
    Corrupt(String),
    #[error("the PDF is password-protected")]
    Encrypted,
}

/// Extracts up to `max_pages` pages and `max_chars` characters, on the blocking pool; a
/// parser panic becomes [`PdfError::Corrupt`] instead of taking the worker down.
pub async fn extract(bytes: std::sync::Arc<Vec<u8>>, max_pages: u32, max_chars: usize) -> Result<PdfText, PdfError> {
    tokio::task::spawn_blocking(move || extract_sync(&bytes, max_pages, max_chars))
        .await
        .unwrap_or_else(|e| Err(PdfError::Corrupt(format!("the parser failed ({e})"))))
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
