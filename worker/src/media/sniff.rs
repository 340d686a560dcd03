//! What a downloaded file really is, from its first bytes. The declared `Content-Type`
//! of provider URLs is often generic (`application/octet-stream`) or wrong (an expired
//! link answering with an HTML error page), and the transcription API decides the codec
//! from the file name's extension, so the extension we send must come from the bytes.

/// A format Leadflow can hand on: its MIME type and the extension the AI APIs expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub mime: &'static str,
    pub ext: &'static str,
}

const fn f(mime: &'static str, ext: &'static str) -> Format {
    Format { mime, ext }
}

pub const PDF: Format = f("application/pdf", "pdf");

/// Images the chat API accepts as `image_url` parts.
pub fn image(b: &[u8]) -> Option<Format> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(f("image/png", "png"))
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(f("image/jpeg", "jpg"))
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some(f("image/gif", "gif"))
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some(f("image/webp", "webp"))
    } else {
        None
    }
}

/// Audio containers `/audio/transcriptions` accepts (flac, m4a, mp3, mp4, ogg/oga, wav, webm).
pub fn audio(b: &[u8]) -> Option<Format> {
    if b.starts_with(b"OggS") {
        // WhatsApp and Telegram voice notes: Opus in OGG.
        Some(f("audio/ogg", "ogg"))
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE" {
        Some(f("audio/wav", "wav"))
    } else if b.starts_with(b"fLaC") {
        Some(f("audio/flac", "flac"))
    } else if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(f("audio/webm", "webm"))
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" {
        // ISO BMFF: M4A brands are audio-only; anything else is an MP4 the API also takes.
        match &b[8..12] {
            b"M4A " | b"M4B " => Some(f("audio/mp4", "m4a")),
            _ => Some(f("audio/mp4", "mp4")),
        }
    } else if b.starts_with(b"ID3") || is_mpeg_audio_frame(b) {
        Some(f("audio/mpeg", "mp3"))
    } else {
        None
    }
}

/// An MPEG audio frame header: 11 sync bits, a valid version, layer and bitrate.
fn is_mpeg_audio_frame(b: &[u8]) -> bool {
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return false;
    }
    let version = (b[1] >> 3) & 0b11;
    let layer = (b[1] >> 1) & 0b11;
    let bitrate = b[2] >> 4;
    let rate = (b[2] >> 2) & 0b11;
    version != 0b01 && layer != 0 && bitrate != 0 && bitrate != 0xF && rate != 0b11
}

/// PDFs: `%PDF-` within the first KiB (some generators put junk before it).
pub fn pdf(b: &[u8]) -> Option<Format> {
    let head = &b[..b.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-").then_some(PDF)
}

/// A short human description of what the bytes look like, for error messages.
pub fn describe(b: &[u8]) -> &'static str {
    let head = String::from_utf8_lossy(&b[..b.len().min(256)]).to_ascii_lowercase();
    if head.contains("<html") || head.contains("<!doctype") {
        "an HTML page"
    } else if image(b).is_some() {
        "an image"
    } else if audio(b).is_some() {
        "an audio file"
    } else if pdf(b).is_some() {
        "a PDF"
    } else if b.is_empty() {
        "an empty file"
    } else {
        "an unknown format"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_formats_by_magic() {
        assert_eq!(image(b"\x89PNG\r\n\x1a\n....").unwrap().ext, "png");
        assert_eq!(image(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap().mime, "image/jpeg");
        assert_eq!(image(b"RIFF\0\0\0\0WEBPVP8 ").unwrap().ext, "webp");
        assert_eq!(audio(b"OggS\0\x02....OpusHead").unwrap().ext, "ogg");
        assert_eq!(audio(b"RIFF\x24\0\0\0WAVEfmt ").unwrap().ext, "wav");
        assert_eq!(audio(b"ID3\x04\0\0").unwrap().ext, "mp3");
        assert_eq!(audio(&[0xFF, 0xFB, 0x90, 0x64]).unwrap().ext, "mp3");
        assert_eq!(audio(b"\0\0\0\x20ftypM4A \0\0").unwrap().ext, "m4a");
        assert_eq!(pdf(b"%PDF-1.7\n").unwrap(), PDF);
        assert!(pdf(b"<html>expired</html>").is_none());
        assert!(
            audio(&[0xFF, 0xFF, 0xFF, 0xFF]).is_none(),
            "sync bits alone are not a frame"
        );
        assert!(
            audio(b"#!AMR\n").is_none(),
            "AMR is not accepted by the transcription API"
        );
        assert_eq!(describe(b"<!DOCTYPE html><title>403</title>"), "an HTML page");
    }
}
