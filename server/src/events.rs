//! Webhooks (`--notify URL`): each manifest push and delete the core reports
//! ([`berth::events::Event`]) is POSTed to every URL as a CloudEvents 1.0 JSON document
//! (structured mode, `application/cloudevents+json`).
//!
//! Each URL has its own bounded queue and one sender task: a request only puts the event in
//! the queues (never waiting), a receiver that is slow or down costs at most the queue, and
//! what does not fit is dropped and counted (`berth_events_total{outcome="dropped"}`). A
//! delivery is tried up to [`ATTEMPTS`] times with doubling pauses; 2xx is delivered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use berth::events::rfc3339;
use berth::registry::Env;

use crate::env::SystemEnv;
use crate::metrics::Metrics;
use berth::events::Event;

pub const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Puts events in each webhook's queue.
pub struct Sender {
    queues: Vec<mpsc::Sender<Bytes>>,
    metrics: Option<Arc<Metrics>>,
    source: String,
}

impl Sender {
    /// Start one sender task per URL, each with a queue of `capacity` events.
    pub fn start(
        urls: &[Uri],
        capacity: usize,
        source: String,
        metrics: Option<Arc<Metrics>>,
    ) -> Sender {
        let connector = connector();
        let queues = urls
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(deliver(url.clone(), rx, connector.clone(), metrics.clone()));
                tx
            })
            .collect();
        Sender {
            queues,
            metrics,
            source,
        }
    }

    /// Queue `event` for every webhook; never waits.
    pub fn send(&self, event: &Event) {
        let body = Bytes::from(cloud_event(event, &self.source).to_string());
        for q in &self.queues {
            if q.try_send(body.clone()).is_err() {
                tracing::debug!("events: queue full, dropped one");
                if let Some(m) = &self.metrics {
                    m.event("dropped");
                }
            }
        }
    }
}

/// http:// and https:// (the system's CA certificates; none if they cannot be read).
fn connector() -> Connector {
    let ring = || Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(ring()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("events: no system CA certificates ({e}); https webhooks will fail");
                let config = rustls::ClientConfig::builder_with_provider(ring())
                    .with_safe_default_protocol_versions()
                    .map(|c| {
                        c.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                    Err(e) => unreachable!("ring supports rustls's default versions: {e}"),
                }
            }
        };
    builder.https_or_http().enable_http1().build()
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

async fn deliver(
    url: Uri,
    mut rx: mpsc::Receiver<Bytes>,
    connector: Connector,
    metrics: Option<Arc<Metrics>>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    while let Some(body) = rx.recv().await {
        let mut pause = FIRST_PAUSE;
        let mut outcome = "failed";
        for attempt in 1..=ATTEMPTS {
            let req = Request::post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
                .header(http::header::USER_AGENT, "berth")
                .body(Full::new(body.clone()));
            let Ok(req) = req else { break };
            match tokio::time::timeout(TIMEOUT, client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    outcome = "delivered";
                    break;
                }
                Ok(Ok(resp)) => tracing::debug!("events: {url}: {} (try {attempt})", resp.status()),
                Ok(Err(e)) => tracing::debug!("events: {url}: {e} (try {attempt})"),
                Err(_) => tracing::debug!("events: {url}: timed out (try {attempt})"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        if outcome == "failed" {
            tracing::warn!("events: {url}: gave up on an event after {ATTEMPTS} tries");
        }
        if let Some(m) = &metrics {
            m.event(outcome);
        }
    }
}

/// The CloudEvents 1.0 document of `event`.
pub fn cloud_event(event: &Event, source: &str) -> Value {
    let mut id = [0u8; 16];
    let _ = getrandom::fill(&mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let subject = match (&event.digest, event.tags.first()) {
        (Some(d), _) => format!("{}@{d}", event.repository),
        (None, Some(t)) => format!("{}:{t}", event.repository),
        (None, None) => event.repository.clone(),
    };
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": format!("io.berth.{}", event.action.as_str()),
        "subject": subject,
        "time": rfc3339(SystemEnv.now()),
        "datacontenttype": "application/json",
        "data": {
            "repository": event.repository,
            "digest": event.digest,
            "mediaType": event.media_type,
            "size": event.size,
            "tag": event.tags.first(),
            "tags": event.tags,
            "actor": event.actor,
        },
    })
}
