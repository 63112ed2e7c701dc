//! The shared credentials file (`~/.aws/credentials`, or `AWS_SHARED_CREDENTIALS_FILE`),
//! profile `AWS_PROFILE` or `default`: the one standard source object_store does not read.
//! Environment variables come first; instance metadata and web identity come after, from
//! object_store itself.

use std::path::PathBuf;

pub struct Credentials {
    pub key: String,
    pub secret: String,
    pub token: Option<String>,
}

pub fn shared_file() -> Option<Credentials> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".aws/credentials"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse(&text, &profile)
}

/// The keys of `[profile]` in an INI text.
fn parse(text: &str, profile: &str) -> Option<Credentials> {
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = Some(v.trim().to_owned());
        match k.trim() {
            "aws_access_key_id" => key = v,
            "aws_secret_access_key" => secret = v,
            "aws_session_token" => token = v,
            _ => {}
        }
    }
    Some(Credentials {
        key: key?,
        secret: secret?,
        token,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_profile_asked() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n\
                    [other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        let d = super::parse(text, "default").unwrap();
        assert_eq!(
            (d.key.as_str(), d.secret.as_str(), d.token),
            ("A", "B", None)
        );
        let o = super::parse(text, "other").unwrap();
        assert_eq!(o.token.as_deref(), Some("E"));
        assert!(super::parse(text, "missing").is_none());
    }
}
