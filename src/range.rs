//! `Range` (blob reads) and `Content-Range` (upload chunks) arithmetic.

use crate::storage::ByteRange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Not `bytes=<first>-[<last>]` or `bytes=-<suffix>`.
    Malformed,
    /// More than one range: berth serves one.
    Multiple,
    /// Well formed, but outside the blob.
    Unsatisfiable,
}

/// The range a `Range` header asks of a blob of `size` bytes (RFC 9110 §14.1.2).
pub fn parse_range(header: &str, size: u64) -> Result<ByteRange, RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Multiple);
    }
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        // Absurdly long numbers are still numbers: saturate rather than refuse.
        Ok(s.parse().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        let suffix = num(last)?;
        if suffix == 0 || size == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        return Ok(ByteRange {
            start: size.saturating_sub(suffix),
            end: size,
        });
    }
    let start = num(first)?;
    let end = if last.is_empty() {
        size
    } else {
        num(last)?.saturating_add(1).min(size)
    };
    if !last.is_empty() && num(last)? < start {
        return Err(RangeError::Malformed);
    }
    if start >= size {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(ByteRange { start, end })
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
        use RangeError::*;
        let cases: &[(&str, u64, Result<ByteRange, RangeError>)] = &[
            ("bytes=0-0", 10, Ok(r(0, 1))),
            ("bytes=0-9", 10, Ok(r(0, 10))),
            ("bytes=0-99", 10, Ok(r(0, 10))),
            ("bytes=5-", 10, Ok(r(5, 10))),
            ("bytes=-3", 10, Ok(r(7, 10))),
            ("bytes=-30", 10, Ok(r(0, 10))),
            ("bytes=9-9", 10, Ok(r(9, 10))),
            ("bytes=0-99999999999999999999999", 10, Ok(r(0, 10))),
            ("bytes=10-", 10, Err(Unsatisfiable)),
            ("bytes=10-20", 10, Err(Unsatisfiable)),
            ("bytes=-0", 10, Err(Unsatisfiable)),
            ("bytes=0-", 0, Err(Unsatisfiable)),
            ("bytes=-1", 0, Err(Unsatisfiable)),
            ("bytes=5-4", 10, Err(Malformed)),
            ("bytes=a-b", 10, Err(Malformed)),
            ("bytes=-", 10, Err(Malformed)),
            ("bytes=", 10, Err(Malformed)),
            ("items=0-1", 10, Err(Malformed)),
            ("0-1", 10, Err(Malformed)),
            ("bytes=+1-2", 10, Err(Malformed)),
            ("bytes=0-1,3-4", 10, Err(Multiple)),
        ];
        for (h, size, want) in cases {
            assert_eq!(parse_range(h, *size), *want, "{h} of {size}");
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
