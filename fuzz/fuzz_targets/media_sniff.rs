//! The media sniffer (what a downloaded file really is) on arbitrary bytes.
#![no_main]

use leadflow_worker::media::sniff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff::image(data);
    let _ = sniff::audio(data);
    let _ = sniff::pdf(data);
    let _ = sniff::describe(data);
});
