//! The e-mail parser (MIME, quoting, Authentication-Results) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((mail, _)) = leadflow_worker::mail::parse(data, None) {
        if let Ok(v) = serde_json::to_value(&mail) {
            let _ = leadflow_shared::mail::parse_stored(&v);
        }
    }
});
