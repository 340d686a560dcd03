//! Every provider's webhook parser, and the form decoding Twilio's goes through, on
//! arbitrary bytes: they may refuse, never panic. The first byte picks the provider.
#![no_main]

use leadflow_shared::channel::Provider;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let provider = Provider::EVERY[pick as usize % Provider::EVERY.len()];
    let value = if provider == Provider::Twilio {
        leadflow_shared::inbound::form_to_json(&leadflow_shared::inbound::form_fields(body))
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    let mut value = value;
    leadflow_shared::text::strip_nul(&mut value);
    let _ = leadflow_shared::inbound::meta::retain_changes_for(&mut value.clone(), "158072934066266");
    let _ = leadflow_shared::inbound::twilio::is_for(&value, "AC0", "+551140028922");
    let _ = leadflow_shared::inbound::parse(provider, &value);
});
