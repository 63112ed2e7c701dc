//! Text the Worker reads: sizes and lists in `[vars]`, R2's checksum errors, and what the
//! mirror reads from upstreams (redirects; challenges are the core's `berth::auth::Challenge`)
//! and from its credentials (a docker config.json). Plain functions with table tests, built on
//! every target (the rest of the crate is wasm32-only).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

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

/// The items of a list var: separated by commas or whitespace, blanks dropped.
pub fn items(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `scheme://host[:port]` of an absolute URL (the whole string when it has no path).
pub fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?', '#']) {
        Some(i) => &url[..start + i],
        None => url,
    }
}

/// Where a redirect's `Location` points, from the URL that answered with it.
pub fn resolve(from: &str, location: &str) -> String {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = from.split_once("://").map_or("https", |(s, _)| s);
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(from))
    } else {
        let path = from.split(['?', '#']).next().unwrap_or(from);
        let dir = match path.rfind('/') {
            Some(i) if i >= origin(from).len() => &path[..=i],
            _ => return format!("{}/{location}", origin(from)),
        };
        format!("{dir}{location}")
    }
}

/// The repository a `/v2/<name>/<manifests|blobs|referrers|tags>/...` path names; empty for
/// any other path.
pub fn repository(path: &str) -> &str {
    let Some(p) = path.strip_prefix("/v2/") else {
        return "";
    };
    let p = p.split('?').next().unwrap_or(p);
    ["/manifests/", "/blobs/", "/referrers/", "/tags/"]
        .iter()
        .filter_map(|m| p.rfind(m).map(|i| &p[..i]))
        .max_by_key(|r| r.len())
        .unwrap_or("")
}

/// `https://host/v1/`, `host`, `http://host` all name `host`; Docker Hub has aliases.
pub fn registry_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match k.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => k,
    }
}

/// The credentials for `host` in a docker config.json (`{"auths": {"host": {"auth":
/// base64(user:password)}}}`, or `username` and `password`), as the value of a Basic
/// `Authorization` header. Errors never quote the file's values.
pub fn docker_auth(config: &str, host: &str) -> Result<Option<String>, String> {
    let doc: serde_json::Value = serde_json::from_slice(config.as_bytes()).map_err(|e| {
        format!(
            "not a docker config.json (at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let Some(auths) = doc.get("auths") else {
        return Ok(None);
    };
    let auths = auths.as_object().ok_or("\"auths\" is not an object")?;
    let wanted = registry_host(host);
    let str_of = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|s| s.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    for (key, entry) in auths {
        if registry_host(key) != wanted {
            continue;
        }
        if let Some(auth) = str_of(entry, "auth") {
            let ok = B64
                .decode(&auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|d| d.contains(':'));
            if !ok {
                return Err(format!(
                    "the entry for {key} is not base64 of user:password"
                ));
            }
            return Ok(Some(auth));
        }
        if let (Some(u), Some(p)) = (str_of(entry, "username"), str_of(entry, "password")) {
            return Ok(Some(B64.encode(format!("{u}:{p}"))));
        }
        return Err(format!(
            "the entry for {key} has no \"auth\" (or \"username\" and \"password\"); \
             identity tokens and credential helpers are not supported"
        ));
    }
    Ok(None)
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

    #[test]
    fn list_items() {
        assert_eq!(items(" a, b  c,,\n d "), ["a", "b", "c", "d"]);
        assert!(items(" , ").is_empty());
    }

    #[test]
    fn redirects() {
        let from = "https://reg.example:5000/v2/a/blobs/sha256:00?x=1";
        assert_eq!(origin(from), "https://reg.example:5000");
        assert_eq!(origin("http://h"), "http://h");
        assert_eq!(
            resolve(from, "https://cdn.example/b?sig=1"),
            "https://cdn.example/b?sig=1"
        );
        assert_eq!(resolve(from, "//cdn.example/b"), "https://cdn.example/b");
        assert_eq!(resolve(from, "/blob/1"), "https://reg.example:5000/blob/1");
        assert_eq!(resolve(from, "c"), "https://reg.example:5000/v2/a/blobs/c");
    }

    #[test]
    fn repositories() {
        assert_eq!(
            repository("/v2/library/alpine/manifests/3"),
            "library/alpine"
        );
        assert_eq!(repository("/v2/a/blobs/b/blobs/sha256:00"), "a/blobs/b");
        assert_eq!(repository("/v2/a/referrers/sha256:00?artifactType=x"), "a");
        assert_eq!(repository("/v2/"), "");
    }

    #[test]
    fn docker_config() {
        let file = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},
            "ghcr.io":{"username":"u","password":"p"},
            "bad.example":{"auth":"!!"},
            "tok.example":{"identitytoken":"secret-rt"}}}"#;
        assert_eq!(
            docker_auth(file, "registry-1.docker.io")
                .unwrap()
                .as_deref(),
            Some("dTpw")
        );
        assert_eq!(
            docker_auth(file, "GHCR.io").unwrap().as_deref(),
            Some("dTpw")
        );
        assert_eq!(docker_auth(file, "quay.io").unwrap(), None);
        assert!(
            docker_auth(file, "bad.example")
                .unwrap_err()
                .contains("base64")
        );
        let e = docker_auth(file, "tok.example").unwrap_err();
        assert!(
            e.contains("not supported") && !e.contains("secret-rt"),
            "{e}"
        );
        let e = docker_auth(r#"{"auths": {"x": {"auth": "sec"#, "x").unwrap_err();
        assert!(
            e.starts_with("not a docker config.json") && !e.contains("sec\""),
            "{e}"
        );
        assert_eq!(docker_auth("{}", "x").unwrap(), None);
    }
}
