//! Manifest and index inspection over any bytes and Content-Type: an answer, never a panic or
//! a stack overflow.
#![no_main]

use berth::manifest::inspect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Option<&str>, &[u8])| {
    let (content_type, bytes) = input;
    if let Ok(m) = inspect(bytes, content_type) {
        assert!(!m.media_type.is_empty());
        let _ = m.referrer_artifact_type();
        for d in m.blobs.iter().chain(&m.children) {
            let _ = d.is_non_distributable();
        }
    }
});
