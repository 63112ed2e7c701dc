//! Upload-session state as read back from storage, which a crash or another version may have
//! left in any shape: decoding and resuming it never panics.
#![no_main]

use berth::session::Session;
use berth::{Algorithm, Hasher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], &str, u64, u64)| {
    let (json, saved, now, expiry) = input;
    if let Some(mut h) = Hasher::restore(saved) {
        h.update(json);
        let _ = h.finish();
    }
    if let Ok(s) = serde_json::from_slice::<Session>(json) {
        let _ = s.expired(now, expiry);
        for a in [Algorithm::Sha256, Algorithm::Sha512] {
            if let Some(mut h) = s.closing_hasher(a) {
                h.update(saved.as_bytes());
                let _ = h.finish();
            }
        }
    }
});
