//! What a copy reports as it goes, and two reporters: bars on a terminal ([`Bars`]) and one
//! JSON object per line ([`JsonLines`]). `()` reports nothing.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use berth::digest::Digest;
use berth::manifest::Descriptor;

/// How a blob reached the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Its bytes were read from the source and written to the destination.
    Copied,
    /// The destination had it already.
    Skipped,
    /// The registry linked it from another repository (cross-repository mount).
    Mounted,
}

/// Events of a copy. Called from several tasks at once; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// The copy will consider `blobs` blobs of `bytes` bytes in all.
    fn plan(&self, _blobs: usize, _bytes: u64) {}
    /// A blob transfer begins.
    fn blob_start(&self, _desc: &Descriptor) {}
    /// `n` more bytes of the blob were read from the source.
    fn blob_bytes(&self, _digest: &Digest, _n: u64) {}
    fn blob_done(&self, _desc: &Descriptor, _outcome: Outcome) {}
    /// A manifest was written, under `reference` (a tag or its digest).
    fn manifest_done(&self, _desc: &Descriptor, _reference: &str) {}
    /// Something worth a line: a retry, a resumed transfer, a fallback.
    fn note(&self, _message: &str) {}
}

impl Progress for () {}

/// Progress bars on stderr: one per blob in flight and a total, with rates.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    blobs: Mutex<HashMap<Digest, ProgressBar>>,
    style: ProgressStyle,
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Bars {
    pub fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let total = multi.add(ProgressBar::new(0));
        total.set_style(bar_style("green/white"));
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(250));
        Bars {
            multi,
            total,
            blobs: Mutex::new(HashMap::new()),
            style: bar_style("cyan/blue"),
        }
    }

    /// Clear the bars (before printing the result).
    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn plan(&self, blobs: usize, bytes: u64) {
        self.total.set_length(bytes);
        self.total.set_message(format!("{blobs} blobs"));
    }

    fn blob_start(&self, desc: &Descriptor) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(desc.size));
        bar.set_style(self.style.clone());
        bar.set_prefix(short_hex(&desc.digest).to_owned());
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(desc.digest.clone(), bar);
    }

    fn blob_bytes(&self, digest: &Digest, n: u64) {
        if let Some(b) = self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            b.inc(n);
        }
        self.total.inc(n);
    }

    fn blob_done(&self, desc: &Descriptor, outcome: Outcome) {
        let bar = self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&desc.digest);
        let word = match outcome {
            Outcome::Copied => "copied",
            Outcome::Skipped => "exists",
            Outcome::Mounted => "mounted",
        };
        match bar {
            Some(b) => {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
            None => {
                // Never transferred: count it in the total all the same.
                self.total.inc(desc.size);
            }
        }
        let _ = self.multi.println(format!(
            "{:>14} {word} ({})",
            short_hex(&desc.digest),
            human(desc.size)
        ));
    }

    fn manifest_done(&self, desc: &Descriptor, reference: &str) {
        let _ = self.multi.println(format!(
            "{:>14} manifest {} written as {reference}",
            short_hex(&desc.digest),
            short(&desc.digest)
        ));
    }

    fn note(&self, message: &str) {
        let _ = self.multi.println(format!("{:>14} {message}", "note"));
    }
}

/// A bar in `colours` (`fg/bg`), with bytes and rate.
fn bar_style(colours: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:>14}} [{{bar:30.{colours}}}] {{binary_bytes:>10}}/{{binary_total_bytes:<10}} \
         {{binary_bytes_per_sec:>12}} {{msg}}"
    ))
    .expect("a valid template")
    .progress_chars("=> ")
}

/// `sha256:0123456789ab`, for messages.
pub(crate) fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm(), short_hex(d))
}

fn short_hex(d: &Digest) -> &str {
    &d.hex()[..12.min(d.hex().len())]
}

/// `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One JSON object per event on a writer (stdout for `--json`), e.g.
/// `{"event":"blob","digest":"sha256:…","size":123,"outcome":"copied"}`.
pub struct JsonLines<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines {
            out: Mutex::new(out),
        }
    }

    pub fn emit(&self, value: serde_json::Value) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }
}

impl<W: Write + Send> Progress for JsonLines<W> {
    fn blob_done(&self, desc: &Descriptor, outcome: Outcome) {
        self.emit(serde_json::json!({
            "event": "blob", "digest": desc.digest, "size": desc.size,
            "mediaType": desc.media_type, "outcome": outcome,
        }));
    }

    fn manifest_done(&self, desc: &Descriptor, reference: &str) {
        self.emit(serde_json::json!({
            "event": "manifest", "digest": desc.digest, "size": desc.size,
            "mediaType": desc.media_type, "reference": reference,
        }));
    }

    fn note(&self, message: &str) {
        self.emit(serde_json::json!({"event": "note", "message": message}));
    }
}
