//! JSON Web Tokens as the Docker token spec uses them: compact JWS, HS256 for the built-in
//! issuer, ES256 (verify only) for an external one. Keys are found by `kid`, and a key only
//! verifies the algorithm it was configured with, so a token cannot pick its own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::policy::PolicyError;

/// Longer tokens are refused before any work is done on them.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One `access` entry: a resource and the actions granted on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// `aud`: one string or a list of them. Serialised untagged; read by hand, since serde's
/// derive for untagged enums buffers the value through its generic `Content` tree (kilobytes
/// of wasm for this one field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Audience, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut all = Vec::new();
                while let Some(a) = seq.next_element()? {
                    all.push(a);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Audience {
    fn has(&self, service: &str) -> bool {
        match self {
            Audience::One(a) => a == service,
            Audience::Many(list) => list.iter().any(|a| a == service),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default)]
    pub access: Vec<Access>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// A key that verifies tokens from one issuer.
#[derive(Clone)]
pub enum Key {
    Hs256 {
        kid: String,
        issuer: String,
        secret: Vec<u8>,
    },
    Es256 {
        kid: String,
        issuer: String,
        key: p256::ecdsa::VerifyingKey,
    },
}

impl std::fmt::Debug for Key {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {})", self.alg(), self.kid())
    }
}

impl Key {
    /// An ES256 key from its PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn es256_pem(kid: &str, issuer: &str, pem: &str) -> Result<Key, PolicyError> {
        let key = p256_pem(pem).ok_or_else(|| {
            PolicyError::invalid(format!("key {kid}"), "not a P-256 public key in PEM")
        })?;
        Ok(Key::Es256 {
            kid: kid.into(),
            issuer: issuer.into(),
            key,
        })
    }

    pub fn kid(&self) -> &str {
        match self {
            Key::Hs256 { kid, .. } | Key::Es256 { kid, .. } => kid,
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Hs256 { .. } => "HS256",
            Key::Es256 { .. } => "ES256",
        }
    }

    fn issuer(&self) -> &str {
        match self {
            Key::Hs256 { issuer, .. } | Key::Es256 { issuer, .. } => issuer,
        }
    }

    fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            Key::Hs256 { secret, .. } => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(input);
                // Constant-time comparison.
                mac.verify_slice(sig).is_ok()
            }
            Key::Es256 { key, .. } => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|sig| key.verify(input, &sig).is_ok()),
        }
    }
}

/// The DER prefix of every P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE,
/// AlgorithmIdentifier (id-ecPublicKey, prime256v1), BIT STRING of 66 bytes. Matching it
/// saves a general DER parser in the wasm.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn p256_pem(pem: &str) -> Option<p256::ecdsa::VerifyingKey> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok()
}

/// Why a token was refused. The client only learns "invalid token"; tests learn which.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    Malformed,
    UnknownKey,
    Signature,
    Issuer,
    Audience,
    Expired,
    NotYetValid,
}

/// Sign `claims` with an HS256 secret.
pub fn sign_hs256(kid: &str, secret: &[u8], claims: &Claims) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
        kid: Some(kid.into()),
    };
    let mut out = encode_part(&header);
    out.push('.');
    out.push_str(&encode_part(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(out.as_bytes());
    out.push('.');
    out.push_str(&B64URL.encode(mac.finalize().into_bytes()));
    out
}

/// Sign `claims` with an ES256 key, as an external issuer would (tests, tools).
pub fn sign_es256(kid: &str, key: &p256::ecdsa::SigningKey, claims: &Claims) -> String {
    use p256::ecdsa::signature::Signer as _;
    let header = Header {
        alg: "ES256".into(),
        typ: Some("JWT".into()),
        kid: Some(kid.into()),
    };
    let mut out = encode_part(&header);
    out.push('.');
    out.push_str(&encode_part(claims));
    let sig: p256::ecdsa::Signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&B64URL.encode(sig.to_bytes()));
    out
}

fn encode_part(value: &impl Serialize) -> String {
    // Serialising these plain structs cannot fail.
    B64URL.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// Check a token's signature (by `kid` and algorithm), issuer, audience and times, allowing
/// `skew` seconds of clock difference.
pub fn verify(
    token: &str,
    keys: &[Key],
    service: &str,
    now: u64,
    skew: u64,
) -> Result<Claims, Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let header: Header = decode_part(h)?;
    let sig = B64URL.decode(s).map_err(|_| Invalid::Malformed)?;
    let key = keys
        .iter()
        .find(|k| Some(k.kid()) == header.kid.as_deref() && k.alg() == header.alg)
        .ok_or(Invalid::UnknownKey)?;
    if !key.verifies(&token.as_bytes()[..h.len() + 1 + c.len()], &sig) {
        return Err(Invalid::Signature);
    }
    let claims: Claims = decode_part(c)?;
    if claims.iss != key.issuer() {
        return Err(Invalid::Issuer);
    }
    if !claims.aud.has(service) {
        return Err(Invalid::Audience);
    }
    if now > claims.exp.saturating_add(skew) {
        return Err(Invalid::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(Invalid::NotYetValid);
    }
    Ok(claims)
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Invalid> {
    let bytes = B64URL.decode(part).map_err(|_| Invalid::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Invalid::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: Audience::One("registry".into()),
            exp: now + 60,
            nbf: Some(now),
            iat: Some(now),
            jti: Some("1".into()),
            access: vec![Access {
                kind: "repository".into(),
                name: "a".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    fn hs(kid: &str, secret: &[u8]) -> Key {
        Key::Hs256 {
            kid: kid.into(),
            issuer: "berth".into(),
            secret: secret.to_vec(),
        }
    }

    #[test]
    fn hs256_checks() {
        let keys = [hs("k1", b"secret-one"), hs("k2", b"secret-two")];
        let now = 1_000_000;
        let t = sign_hs256("k1", b"secret-one", &claims(now));
        assert_eq!(verify(&t, &keys, "registry", now, 0), Ok(claims(now)));
        // Clock skew on both ends.
        assert!(verify(&t, &keys, "registry", now + 90, 30).is_ok());
        assert_eq!(
            verify(&t, &keys, "registry", now + 61, 0),
            Err(Invalid::Expired)
        );
        assert!(verify(&t, &keys, "registry", now - 10, 30).is_ok());
        assert_eq!(
            verify(&t, &keys, "registry", now - 10, 0),
            Err(Invalid::NotYetValid)
        );
        assert_eq!(verify(&t, &keys, "other", now, 0), Err(Invalid::Audience));
        // The right kid with another key's secret, an unknown kid, a tampered payload.
        let forged = sign_hs256("k2", b"secret-one", &claims(now));
        assert_eq!(
            verify(&forged, &keys, "registry", now, 0),
            Err(Invalid::Signature)
        );
        let lost = sign_hs256("k3", b"secret-one", &claims(now));
        assert_eq!(
            verify(&lost, &keys, "registry", now, 0),
            Err(Invalid::UnknownKey)
        );
        let mut more = claims(now);
        more.access[0].actions.push("push".into());
        let other = sign_hs256("k1", b"secret-one", &more);
        let mid = |t: &str| t.split('.').nth(1).unwrap().to_owned();
        let tampered = t.replace(&mid(&t), &mid(&other));
        assert_eq!(
            verify(&tampered, &keys, "registry", now, 0),
            Err(Invalid::Signature)
        );
        let mut foreign = claims(now);
        foreign.iss = "elsewhere".into();
        let t = sign_hs256("k1", b"secret-one", &foreign);
        assert_eq!(verify(&t, &keys, "registry", now, 0), Err(Invalid::Issuer));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!.!.!",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                verify(bad, &keys, "registry", now, 0),
                Err(Invalid::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn pem_keys() {
        let pem = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8TgNXtghFOyA0jEtZJ3smpwkcIgu
VUaKIlTHRiadopc3iPqexQRGURSNNXC9XqWrVvCVA/CUETPZ8Qr4lSSA6g==
-----END PUBLIC KEY-----
";
        assert!(Key::es256_pem("k", "i", pem).is_ok());
        // A P-384 key, a truncated one, a private key, garbage.
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEC6dOr0X3PuIPHqBLwb3ppiLKpyZHVV0l
ybtJWCSB7Ar6j0VYKd4Ye4e7bgKcyYu7BNGwo3eX6W+tU3gU2QoX1q4bZ8/6JYUw
Wj+f7Zr0cRx2m1T4Xx2KqD/q3bqZqn7A
-----END PUBLIC KEY-----";
        for bad in [
            p384,
            &pem[..120],
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "x",
        ] {
            assert!(Key::es256_pem("k", "i", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn alg_is_the_keys_not_the_tokens() {
        // An HS256 token whose kid names an ES256 key is refused without trying the key.
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let keys = [Key::Es256 {
            kid: "ext".into(),
            issuer: "berth".into(),
            key: *sk.verifying_key(),
        }];
        let t = sign_hs256("ext", b"anything", &claims(5));
        assert_eq!(
            verify(&t, &keys, "registry", 5, 0),
            Err(Invalid::UnknownKey)
        );
    }

    #[test]
    fn audiences() {
        let cases = [
            (r#""registry""#, Some(Audience::One("registry".into()))),
            (
                r#"["a","b"]"#,
                Some(Audience::Many(vec!["a".into(), "b".into()])),
            ),
            ("[]", Some(Audience::Many(vec![]))),
            ("7", None),
            ("[7]", None),
            (r#"{"a":"b"}"#, None),
            ("null", None),
        ];
        for (json, want) in cases {
            let got: Option<Audience> = serde_json::from_str(json).ok();
            assert_eq!(got, want, "{json}");
            if let Some(a) = got {
                let back = serde_json::to_string(&a).unwrap();
                assert_eq!(back, json.replace(' ', ""));
            }
        }
    }
}
