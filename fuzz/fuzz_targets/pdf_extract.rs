//! PDF text extraction, in-process as the sandbox child runs it, on arbitrary bytes.
//! A panic inside lopdf/pdf-extract is the child's defined "PDF could not be read" path
//! (it catches it and answers `Corrupt`), so panics are caught here too; what this target
//! hunts are the failures `catch_unwind` cannot absorb — aborts, stack overflows, runaway
//! memory (libFuzzer's -rss_limit_mb) and hangs — which the child's RLIMIT_AS, CPU limit
//! and timeout must.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's hook turns every panic into an abort; the child does not.
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(|| leadflow_worker::media::pdf::extract_sync(data, 5, 5000));
});
