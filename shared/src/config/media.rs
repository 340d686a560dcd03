//! Limits of the media pipeline: how big a download may be per kind (the transcription
//! API refuses audio over 25 MB; images and PDFs are capped so one lead cannot fill a
//! worker's memory), how long a download and the whole wait for media may take, and how
//! much of a PDF reaches the prompt.

use std::time::Duration;

use super::{invalid, ConfigError, Layers};

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub max_audio_bytes: u64,
    pub max_pdf_bytes: u64,
    pub max_image_bytes: u64,
    /// One download, connect to last byte.
    pub download_timeout: Duration,
    /// Tries per medium (download + understanding) before it becomes a note in the prompt.
    pub max_attempts: u32,
    /// How long a due burst's generation waits for media still being processed.
    pub wait: Duration,
    /// Media jobs in flight per worker process: bounds download buffers and CPU.
    pub concurrency: usize,
    pub pdf_max_pages: u32,
    pub pdf_max_chars: usize,
    /// Address space a PDF extraction's child process may use (`RLIMIT_AS`): a
    /// decompression bomb fails there, not in the worker.
    pub pdf_memory_limit: u64,
    /// Wall-clock limit of one PDF extraction (the child is killed after it).
    pub pdf_timeout: Duration,
    /// The executable run as the extraction child (`<it> pdf-extract …`); unset: this
    /// process's own executable.
    pub pdf_extractor: Option<std::path::PathBuf>,
}

impl MediaConfig {
    /// The download cap for a medium of this kind.
    pub fn max_bytes(&self, kind: crate::inbound::MediaKind) -> u64 {
        use crate::inbound::MediaKind;
        match kind {
            MediaKind::Audio => self.max_audio_bytes,
            MediaKind::Pdf => self.max_pdf_bytes,
            MediaKind::Image => self.max_image_bytes,
        }
    }

    pub(super) fn parse(l: &Layers) -> Result<Self, ConfigError> {
        let c = Self {
            max_audio_bytes: l.size("LEADFLOW_MEDIA_MAX_AUDIO_BYTES")?,
            max_pdf_bytes: l.size("LEADFLOW_MEDIA_MAX_PDF_BYTES")?,
            max_image_bytes: l.size("LEADFLOW_MEDIA_MAX_IMAGE_BYTES")?,
            download_timeout: l.duration("LEADFLOW_MEDIA_TIMEOUT")?,
            max_attempts: l.number("LEADFLOW_MEDIA_MAX_ATTEMPTS")?,
            wait: l.duration("LEADFLOW_MEDIA_WAIT")?,
            concurrency: l.number("LEADFLOW_MEDIA_CONCURRENCY")?,
            pdf_max_pages: l.number("LEADFLOW_PDF_MAX_PAGES")?,
            pdf_max_chars: l.number("LEADFLOW_PDF_MAX_CHARS")?,
            pdf_memory_limit: l.size("LEADFLOW_PDF_MEMORY_LIMIT")?,
            pdf_timeout: l.duration("LEADFLOW_PDF_TIMEOUT")?,
            pdf_extractor: l.get("LEADFLOW_PDF_EXTRACTOR").map(std::path::PathBuf::from),
        };
        if c.pdf_memory_limit < 64 << 20 {
            return Err(invalid("LEADFLOW_PDF_MEMORY_LIMIT", "must be at least 64MiB"));
        }
        if c.pdf_timeout < Duration::from_millis(100) {
            return Err(invalid("LEADFLOW_PDF_TIMEOUT", "must be at least 100ms"));
        }
        if c.max_attempts == 0 {
            return Err(invalid("LEADFLOW_MEDIA_MAX_ATTEMPTS", "must be at least 1"));
        }
        if c.concurrency == 0 {
            return Err(invalid("LEADFLOW_MEDIA_CONCURRENCY", "must be at least 1"));
        }
        if c.pdf_max_pages == 0 {
            return Err(invalid("LEADFLOW_PDF_MAX_PAGES", "must be at least 1"));
        }
        Ok(c)
    }
}

/// Parses a byte size: `1048576`, `500KB`, `25MB` (powers of 1000) or `10MiB`, `64KiB`
/// (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 1048576, 500KB, 25MB, 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_size("25MB").unwrap(), 25_000_000);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size(" 64 kib ").unwrap(), 64 << 10);
        assert!(parse_size("MB").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
