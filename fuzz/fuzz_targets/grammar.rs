//! Names, tags, references and digests: what parses prints back as itself and stays inside
//! the grammar's limits.
#![no_main]

use berth::names::{Reference, RepoName, Tag};
use berth::{Algorithm, Digest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(n) = s.parse::<RepoName>() {
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= berth::names::MAX_NAME_LEN);
        assert!(!s.split('/').any(|c| c.is_empty() || c == "." || c == ".."));
        assert!(!s.contains(['\\', '\0', '%']));
    }
    if let Ok(t) = s.parse::<Tag>() {
        assert_eq!(t.to_string(), s);
        assert!(s.len() <= 128 && !s.contains(['/', '\\', '\0']) && !s.starts_with('.'));
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert!(d.hex().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
    if let Ok(r) = s.parse::<Reference>() {
        assert_eq!(r.to_string(), s);
    }
    if let Ok(a) = s.parse::<Algorithm>() {
        let d = Digest::of(a, s.as_bytes());
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
});
