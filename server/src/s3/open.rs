//! Opening a bucket: the settings, the client, and one cheap request that tells a missing
//! bucket, refused credentials and an unreachable endpoint apart before the server starts.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use super::{DEFAULT_PART_SIZE, S3Store, builder, client_options, creds, retry_config};

/// Where the store lives: `s3://BUCKET[/PREFIX]` and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    /// An S3-compatible server's URL (path-style addressing); AWS itself when absent.
    pub endpoint: Option<String>,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` when absent, then `us-east-1`.
    pub region: Option<String>,
    pub part_size: u64,
    /// An access key and secret given outright (tests); the standard AWS sources otherwise.
    pub credentials: Option<(String, String)>,
    /// Answer blob GETs with a redirect to a presigned URL valid this long (`--redirect`);
    /// `None`: serve the bytes through berth.
    pub redirect: Option<Duration>,
}

/// Never shows the credentials.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("part_size", &self.part_size)
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// `s3://BUCKET[/PREFIX]`; `None` if `url` is not an `s3://` URL.
    pub fn parse(url: &str) -> Option<Result<S3Config, String>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err("s3://BUCKET[/PREFIX]: the bucket is missing".into()));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Some(Err("s3://BUCKET[/PREFIX]: a bad prefix".into()));
        }
        Some(Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint: None,
            region: None,
            part_size: DEFAULT_PART_SIZE,
            credentials: None,
            redirect: None,
        }))
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Build the client and check, with one listing request, that the bucket is there and
    /// takes our credentials. No scan: the listing starts past every key berth writes.
    pub async fn open(&self) -> Result<S3Store, OpenError> {
        let mut b = builder()
            .with_bucket_name(&self.bucket)
            .with_retry(retry_config());
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        let allow_http = match &self.endpoint {
            Some(e) => {
                // S3-compatible servers: path-style addressing (`http://host/bucket/key`).
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                e.starts_with("http://")
            }
            None => {
                b = b.with_virtual_hosted_style_request(true);
                false
            }
        };
        b = b.with_client_options(client_options(allow_http));
        if let Some((key, secret)) = &self.credentials {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
        } else if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let Some(c) = creds::shared_file()
        {
            b = b.with_access_key_id(c.key).with_secret_access_key(c.secret);
            if let Some(t) = c.token {
                b = b.with_token(t);
            }
        }
        let s3 = b.build().map_err(|e| OpenError::Config(e.to_string()))?;
        // A listing that starts after `~` (past every key berth writes) returns nothing, but
        // fails as every request would.
        let probe = Path::from(format!("{}~", self.prefix));
        let mut listed = s3.list_with_offset(None, &probe);
        if let Some(Err(e)) = listed.next().await {
            return Err(classify(self, e));
        }
        drop(listed);
        // The same TLS roots as object_store's client (reqwest is built with both root sets).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| OpenError::Config(e.to_string()))?;
        let mut store = S3Store::new(s3, http, self.prefix.clone(), self.part_size, self.url());
        store.redirect = self.redirect;
        Ok(store)
    }
}

/// Why a bucket could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Config(String),
    NoBucket(String),
    Credentials(String),
    Unreachable(String),
    Other(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Config(e) => write!(f, "S3 settings: {e}"),
            OpenError::NoBucket(e) => write!(f, "the bucket does not exist: {e}"),
            OpenError::Credentials(e) => write!(
                f,
                "the S3 credentials were refused (check AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY or the shared credentials file): {e}"
            ),
            OpenError::Unreachable(e) => write!(f, "the S3 endpoint cannot be reached: {e}"),
            OpenError::Other(e) => write!(f, "the bucket refused a listing: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

fn classify(config: &S3Config, e: object_store::Error) -> OpenError {
    let text = error_chain(&e);
    let at = format!(
        "{} at {}",
        config.url(),
        config.endpoint.as_deref().unwrap_or("AWS")
    );
    let has = |s: &str| text.contains(s);
    // Transport failures first, and status codes only with their reason phrase: the text
    // also holds the endpoint, whose port may read "403" (port 40339).
    if has("error sending request")
        || has("tcp connect error")
        || has("dns error")
        || has("timed out")
    {
        OpenError::Unreachable(format!("{at}: {text}"))
    } else if has("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
        OpenError::NoBucket(format!("{at}: {text}"))
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AccessDenied")
        || has("403 Forbidden")
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        OpenError::Credentials(format!("{at}: {text}"))
    } else {
        OpenError::Other(format!("{at}: {text}"))
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    /// The CI run that found this: an endpoint on port 40339 read as an HTTP 403.
    #[test]
    fn a_port_is_not_a_status() {
        let config = S3Config::parse("s3://b").unwrap().unwrap();
        let refused = generic(
            "Error performing GET http://127.0.0.1:40339/b?list-type=2 - HTTP error: \
             error sending request: client error (Connect): tcp connect error: \
             Connection refused (os error 111)",
        );
        assert!(matches!(
            classify(&config, refused),
            OpenError::Unreachable(_)
        ));
        let wrong_key = generic(
            "Error performing GET http://127.0.0.1:8333/b: Client error with status \
             403 Forbidden: <Code>InvalidAccessKeyId</Code>",
        );
        assert!(matches!(
            classify(&config, wrong_key),
            OpenError::Credentials(_)
        ));
    }
}
