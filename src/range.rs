//! `Range` (blob reads) and `Content-Range` (upload chunks) arithmetic.

use crate::storage::{ByteRange, RangeSpec};

/// The range a `Range` header asks for (RFC 9110 §14.1.2), to be resolved against the blob's
/// size by the store ([`RangeSpec::resolve`]). `None` for anything but one well-formed byte
/// range: a server may ignore such a header and send the whole blob, and berth does.
pub fn parse_range(header: &str) -> Option<RangeSpec> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Absurdly long numbers are still numbers: saturate rather than refuse.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        return Some(RangeSpec::Suffix(num(last)?));
    }
    let first = num(first)?;
    let last = match last {
        "" => None,
        l => Some(num(l)?).filter(|l| *l >= first).map(Some)?,
    };
    Some(RangeSpec::From { first, last })
}

/// `Content-Range: bytes <first>-<last>/<size>` for a 206.
pub fn content_range(r: ByteRange, size: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end - 1, size)
}

/// `Content-Range: bytes */<size>` for a 416.
pub fn unsatisfied(size: u64) -> String {
    format!("bytes */{size}")
}

/// An upload chunk's `Content-Range: <first>-<last>` (inclusive), as `[first, last + 1)`.
/// Also takes the `bytes ` / `bytes=` prefix and `/<size>` suffix some clients send.
pub fn parse_chunk_range(header: &str) -> Option<ByteRange> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    let s = s.split('/').next()?;
    let (first, last) = s.split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return None;
    }
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    if last < first {
        return None;
    }
    Some(ByteRange {
        start: first,
        end: last + 1,
    })
}

/// The `Range` header of an upload's progress: `0-<last byte>`, with Distribution's `0-0` for
/// an empty upload, which clients expect.
pub fn upload_progress(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn ranges() {
        let cases: &[(&str, u64, Option<ByteRange>)] = &[
            ("bytes=0-0", 10, Some(r(0, 1))),
            ("bytes=0-9", 10, Some(r(0, 10))),
            ("bytes=0-99", 10, Some(r(0, 10))),
            ("bytes=5-", 10, Some(r(5, 10))),
            ("bytes=-3", 10, Some(r(7, 10))),
            ("bytes=-30", 10, Some(r(0, 10))),
            ("bytes=9-9", 10, Some(r(9, 10))),
            ("bytes=0-99999999999999999999999", 10, Some(r(0, 10))),
            ("bytes=10-", 10, None),
            ("bytes=10-20", 10, None),
            ("bytes=-0", 10, None),
            ("bytes=0-", 0, None),
            ("bytes=-1", 0, None),
        ];
        for (h, size, want) in cases {
            let spec = parse_range(h).unwrap_or_else(|| panic!("{h} parses"));
            assert_eq!(spec.resolve(*size), *want, "{h} of {size}");
        }
        // Not one well-formed byte range: ignored (the whole blob is sent).
        for h in [
            "bytes=5-4",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "items=0-1",
            "0-1",
            "bytes=+1-2",
            "bytes=0-1,3-4",
        ] {
            assert_eq!(parse_range(h), None, "{h}");
        }
        assert_eq!(content_range(r(0, 10), 10), "bytes 0-9/10");
        assert_eq!(unsatisfied(10), "bytes */10");
    }

    #[test]
    fn chunk_ranges() {
        let cases: &[(&str, Option<ByteRange>)] = &[
            ("0-99", Some(r(0, 100))),
            ("100-100", Some(r(100, 101))),
            ("bytes 0-9/10", Some(r(0, 10))),
            ("bytes=0-9", Some(r(0, 10))),
            ("0-9/*", Some(r(0, 10))),
            ("9-0", None),
            ("-1", None),
            ("a-b", None),
            ("", None),
            ("0-99999999999999999999", None),
        ];
        for (h, want) in cases {
            assert_eq!(parse_chunk_range(h), *want, "{h}");
        }
        assert_eq!(upload_progress(0), "0-0");
        assert_eq!(upload_progress(1), "0-0");
        assert_eq!(upload_progress(10), "0-9");
    }
}
