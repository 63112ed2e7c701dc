//! `Range` against any blob size, and upload `Content-Range`: a range returned is never
//! empty and never past the blob.
#![no_main]

use berth::range::{content_range, parse_chunk_range, parse_range};
use berth::session::chunk_length;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64, Option<u64>)| {
    let (header, size, length) = input;
    if let Some(r) = parse_range(header).and_then(|spec| spec.resolve(size)) {
        assert!(r.start < r.end && r.end <= size, "{header:?} {size} -> {r:?}");
        let _ = content_range(r, size);
    }
    if let Some(r) = parse_chunk_range(header) {
        assert!(r.start < r.end);
    }
    if let Ok(Some(n)) = chunk_length(size, Some(header), length) {
        assert!(n > 0);
    }
});
