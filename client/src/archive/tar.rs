//! Reading a tar's table of contents: where each regular file's data starts and how long
//! it is, so that entries can be read in place.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The regular files of a tar: name → (data offset, size). Understands ustar prefixes, GNU
/// long names and PAX `path` records.
pub(super) fn scan(path: &Path) -> std::io::Result<HashMap<String, (u64, u64)>> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    let mut entries = HashMap::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    let mut header = [0u8; 512];
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    while pos + 512 <= total {
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_size(&header[124..136]).ok_or_else(|| bad("not a tar file"))?;
        let data = pos + 512;
        let next = data
            .checked_add(size.div_ceil(512) * 512)
            .ok_or_else(|| bad("not a tar file"))?;
        let kind = header[156];
        let field = |r: std::ops::Range<usize>| {
            let b = &header[r];
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        match kind {
            b'L' | b'x' if size <= 1 << 20 => {
                let mut buf = vec![0; size as usize];
                f.read_exact(&mut buf)?;
                long_name = if kind == b'L' {
                    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
                    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
                } else {
                    pax_path(&buf).or(long_name)
                };
            }
            b'0' | 0 | b'7' => {
                let name = long_name.take().unwrap_or_else(|| {
                    let name = field(0..100);
                    let prefix = if &header[257..262] == b"ustar" {
                        field(345..500)
                    } else {
                        String::new()
                    };
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                });
                let name = name.trim_start_matches("./").to_owned();
                entries.insert(name, (data, size));
            }
            _ => long_name = None,
        }
        pos = next;
    }
    if entries.is_empty() {
        return Err(bad("not a tar file, or an empty one"));
    }
    Ok(entries)
}

/// Octal, or base-256 with the high bit set.
fn parse_size(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        let mut v = 0u64;
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(c as u64)?;
        }
        return Some(v);
    }
    let s: String = b
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The `path` record of a PAX header: `"<len> path=<value>\n"` records.
fn pax_path(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    text.split('\n')
        .filter_map(|rec| rec.split_once(' ').map(|(_, kv)| kv))
        .find_map(|kv| kv.strip_prefix("path=").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_pax_paths() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(
            parse_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_size(b"xyz\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(
            pax_path(b"30 mtime=1700000000.000000\n16 path=a/b/c\n").as_deref(),
            Some("a/b/c")
        );
    }
}
