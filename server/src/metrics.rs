//! Prometheus metrics (`prometheus-client`, OpenMetrics text): requests, bytes, latency,
//! uploads in progress, storage operations, garbage collection, events.
//!
//! Labels come from bounded sets only: the endpoint is the core's route kind
//! ([`berth::route::Route`]), never a repository name; the method is one of seven.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use berth::route::{self, Route};
use berth::storage::{BlobEntry, BlobInfo, RangeSpec};
use berth::{
    BlobRead, Body, Digest, ListOptions, PutMode, RepoName, Storage, StorageError, Stored, Version,
};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    received: Family<EndpointLabels, Counter>,
    sent: Family<EndpointLabels, Counter>,
    in_flight: Gauge,
    uploads: Gauge,
    storage: Family<OpLabels, Histogram, fn() -> Histogram>,
    storage_errors: Family<ErrorLabels, Counter>,
    gc_passes: Family<OutcomeLabels, Counter>,
    gc_freed: Counter,
    gc_blobs: Counter,
    events: Family<OutcomeLabels, Counter>,
    mirror: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            received: Family::default(),
            sent: Family::default(),
            in_flight: Gauge::default(),
            uploads: Gauge::default(),
            storage: Family::new_with_constructor(latency_histogram),
            storage_errors: Family::default(),
            gc_passes: Family::default(),
            gc_freed: Counter::default(),
            gc_blobs: Counter::default(),
            events: Family::default(),
            mirror: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered, by endpoint, method and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from the request's head to the response's last byte",
            m.duration.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes received",
            m.received.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent",
            m.sent.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being answered now",
            m.in_flight.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Upload requests (POST, PATCH, PUT on blobs/uploads) being answered now",
            m.uploads.clone(),
        );
        registry.register(
            "storage_operation_duration_seconds",
            "Storage calls, by operation",
            m.storage.clone(),
        );
        registry.register(
            "storage_errors",
            "Storage calls that failed (kind: unavailable or other), by operation",
            m.storage_errors.clone(),
        );
        registry.register(
            "gc_passes",
            "Garbage collection passes, by outcome (finished, aborted, failed)",
            m.gc_passes.clone(),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes of blobs removed by garbage collection",
            m.gc_freed.clone(),
        );
        registry.register(
            "gc_deleted_blobs",
            "Blobs removed by garbage collection",
            m.gc_blobs.clone(),
        );
        registry.register(
            "events",
            "Event notifications, by outcome (delivered, failed after retries, dropped on a full queue)",
            m.events.clone(),
        );
        registry.register(
            "mirror_requests",
            "Reads of mirrored repositories, by what the cache did (hit, revalidated, miss, stale)",
            m.mirror.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A request begins: the guard ends it.
    pub fn start(self: &Arc<Self>, method: &http::Method, path: &str) -> RequestGuard {
        let endpoint = endpoint(path);
        let upload = matches!(endpoint, "uploads" | "upload")
            && matches!(
                *method,
                http::Method::POST | http::Method::PATCH | http::Method::PUT
            );
        self.in_flight.inc();
        if upload {
            self.uploads.inc();
        }
        RequestGuard {
            metrics: self.clone(),
            upload,
        }
    }

    /// A request is done (its response sent, or cut short).
    pub fn finish(
        &self,
        method: &http::Method,
        path: &str,
        status: u16,
        received: u64,
        sent: u64,
        start: Instant,
    ) {
        let endpoint = endpoint(path);
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                method: method_label(method),
                status,
            })
            .inc();
        let e = EndpointLabels { endpoint };
        self.duration
            .get_or_create(&e)
            .observe(start.elapsed().as_secs_f64());
        self.received.get_or_create(&e).inc_by(received);
        self.sent.get_or_create(&e).inc_by(sent);
    }

    pub fn gc_pass(&self, report: Option<&berth::gc::Report>) {
        let outcome = match report {
            None => "failed",
            Some(r) if r.aborted.is_some() => "aborted",
            Some(_) => "finished",
        };
        self.gc_passes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(r) = report {
            self.gc_freed.inc_by(r.bytes_freed);
            self.gc_blobs.inc_by(r.blobs_deleted);
        }
    }

    pub fn mirror(&self, what: berth::mirror::CacheResult) {
        self.mirror
            .get_or_create(&ResultLabels {
                result: what.as_str(),
            })
            .inc();
    }

    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn storage_call(&self, operation: &'static str, start: Instant, error: Option<&StorageError>) {
        self.storage
            .get_or_create(&OpLabels { operation })
            .observe(start.elapsed().as_secs_f64());
        let kind = match error {
            Some(StorageError::Unavailable(_)) => "unavailable",
            Some(StorageError::Other(_)) => "other",
            // Not found, conflicts, a client's failed body: answers, not faults.
            _ => return,
        };
        self.storage_errors
            .get_or_create(&ErrorLabels { operation, kind })
            .inc();
    }
}

/// Ends the in-flight gauges when dropped.
pub struct RequestGuard {
    metrics: Arc<Metrics>,
    upload: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
        if self.upload {
            self.metrics.uploads.dec();
        }
    }
}

/// The endpoint label of a path: the core's route kind, or one of the server's own.
pub fn endpoint(path: &str) -> &'static str {
    match route::parse(path) {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags { .. } => "tags",
        Route::Manifest { .. } => "manifest",
        Route::Blob { .. } => "blob",
        Route::Uploads { .. } => "uploads",
        Route::Upload { .. } => "upload",
        Route::Referrers { .. } => "referrers",
        Route::Berth(_) => "extension",
        Route::Unknown => match path {
            "/metrics" => "metrics",
            "/healthz" | "/readyz" => "health",
            _ => "other",
        },
    }
}

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// A store whose calls are timed and whose failures are counted.
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Metered<S> {
        Metered { inner, metrics }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

type Result<T> = std::result::Result<T, StorageError>;

macro_rules! metered {
    ($self:ident, $op:literal, $call:expr) => {{
        let start = Instant::now();
        let r = $call.await;
        $self.metrics.storage_call($op, start, r.as_ref().err());
        r
    }};
}

impl<S: Storage> Storage for Metered<S> {
    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        metered!(self, "blob_location", self.inner.blob_location(digest))
    }
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        metered!(self, "blob_head", self.inner.blob_head(digest))
    }
    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        metered!(self, "blob_get", self.inner.blob_get(digest, range))
    }
    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        metered!(self, "blob_put", self.inner.blob_put(digest, body))
    }
    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        metered!(self, "blob_delete", self.inner.blob_delete(digest))
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        metered!(self, "blob_list", self.inner.blob_list(options))
    }
    async fn upload_start(&self, id: &str) -> Result<String> {
        metered!(self, "upload_start", self.inner.upload_start(id))
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        metered!(
            self,
            "upload_append",
            self.inner.upload_append(id, state, offset, body)
        )
    }
    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        metered!(
            self,
            "upload_finish",
            self.inner.upload_finish(id, state, digest, size)
        )
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        metered!(self, "upload_abort", self.inner.upload_abort(id, state))
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        metered!(self, "meta_get", self.inner.meta_get(key))
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        metered!(self, "meta_put", self.inner.meta_put(key, value, mode))
    }
    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        metered!(self, "meta_delete", self.inner.meta_delete(key, expected))
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        metered!(self, "meta_list", self.inner.meta_list(prefix, options))
    }
    fn writable(&self, name: &RepoName) -> bool {
        self.inner.writable(name)
    }
}
