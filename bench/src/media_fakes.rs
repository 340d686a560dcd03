//! The media benchmark's own instruments: a file host for the leads' PDFs and voice notes
//! that counts the downloads it serves at once (what the memory section needs, which
//! testkit's general file host does not measure), and a generator of real text PDFs of a
//! given size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::get;
use axum::Router;
use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};

/// The committed voice note (OGG/Opus), as WhatsApp would send it.
pub const VOICE_NOTE: &[u8] = include_bytes!("../../tests/fixtures/media/voice.ogg");

/// Downloads of `/doc.pdf` being served right now, and the most at once.
#[derive(Default)]
pub struct InFlight {
    now: AtomicUsize,
    pub max: AtomicUsize,
}

/// Serves `/doc.pdf` (after `delay`, so downloads overlap) and `/voice.ogg`; returns
/// the base URL.
pub async fn host(pdf: Vec<u8>, delay: Duration, in_flight: Arc<InFlight>) -> anyhow::Result<String> {
    let pdf = Bytes::from(pdf);
    let serve_pdf = move || {
        let (pdf, f) = (pdf.clone(), in_flight.clone());
        async move {
            let now = f.now.fetch_add(1, Ordering::SeqCst) + 1;
            f.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            f.now.fetch_sub(1, Ordering::SeqCst);
            ([("content-type", "application/pdf")], pdf)
        }
    };
    let app = Router::new().route("/doc.pdf", get(serve_pdf)).route(
        "/voice.ogg",
        get(|| async { ([("content-type", "audio/ogg")], Bytes::from_static(VOICE_NOTE)) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// A real PDF of about `target` bytes: A4 pages of Helvetica text (uncompressed
/// content streams, Portuguese with accents), as a long contract or statement would be.
pub fn text_pdf(target: usize) -> anyhow::Result<Vec<u8>> {
    const LINE: &str = "Cl\u{e1}usula {n}: o financiamento ser\u{e1} pago em 360 parcelas, corrigidas pelo IPCA; condom\u{ed}nio e IPTU \u{e0} parte.";
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids: Vec<Object> = Vec::new();
    let (mut size, mut n) = (0usize, 0usize);
    while size < target {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 9.into()]),
            Operation::new("TL", vec![11.into()]),
            Operation::new("Td", vec![30.into(), 810.into()]),
        ];
        for _ in 0..70 {
            n += 1;
            let line = LINE.replace("{n}", &n.to_string());
            // WinAnsi is Latin-1 for these characters.
            let bytes: Vec<u8> = line.chars().map(|c| c as u32 as u8).collect();
            ops.push(Operation::new(
                "Tj",
                vec![Object::String(bytes, lopdf::StringFormat::Literal)],
            ));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let encoded = Content { operations: ops }.encode()?;
        size += encoded.len();
        let content_id = doc.add_object(Stream::new(dictionary! {}, encoded));
        kids.push(
            doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id })
                .into(),
        );
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}
