//! Text the Worker reads: sizes in `[vars]`, and R2's checksum errors. Plain functions with
//! table tests, built on every target (the rest of the crate is wasm32-only).

/// A size in bytes: `1048576`, or with a suffix `KiB`, `MiB`, `GiB` (`16MiB`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    let shift = match unit {
        "" | "B" => 0,
        "KiB" | "K" => 10,
        "MiB" | "M" => 20,
        "GiB" | "G" => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Whether an R2 error says the bytes did not match the checksum given with them, and if so
/// the digest R2 computed, as lowercase hex when the message names it. R2 (and its local
/// simulation) says: `The SHA-256 checksum you specified did not match what we received.
/// You provided a SHA-256 checksum with value: <hex> Actual SHA-256 was: <hex> (10037)`.
pub fn checksum_mismatch(message: &str) -> Option<Option<String>> {
    if !message.contains("checksum you specified did not match") && !message.contains("(10037)") {
        return None;
    }
    let actual = message
        .split_once("Actual ")
        .and_then(|(_, rest)| rest.split_once(" was: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .filter(|hex| !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    Some(actual)
}

/// Hex to bytes; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `%XX` escapes decoded (for the test route's `?prefix=`); `None` if the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            s.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("1048576", Some(1 << 20)),
            ("16MiB", Some(16 << 20)),
            (" 2 GiB ", Some(2 << 30)),
            ("5M", Some(5 << 20)),
            ("0", Some(0)),
            ("16MB", None),
            ("x", None),
            ("", None),
            ("99999999999GiB", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), want, "{input:?}");
        }
    }

    #[test]
    fn checksum_messages() {
        let local = "put: The SHA-256 checksum you specified did not match what we received.\n\
            You provided a SHA-256 checksum with value: 2d71\n\
            Actual SHA-256 was: 3E75 (10037)";
        let cases = [
            (local, Some(Some("3e75".to_owned()))),
            ("put: bad digest (10037)", Some(None)),
            (
                "put: The SHA-512 checksum you specified did not match",
                Some(None),
            ),
            ("put: We encountered an internal error. (10001)", None),
            ("", None),
        ];
        for (message, want) in cases {
            assert_eq!(checksum_mismatch(message), want, "{message:?}");
        }
    }

    #[test]
    fn percent() {
        assert_eq!(
            percent_decode("blobs%2Fsha256%3Aab").as_deref(),
            Some("blobs/sha256:ab")
        );
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn hex() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
