//! The little JavaScript the adapter needs: reading platform streams in large chunks, the
//! mirror's `fetch`, and randomness. Bytes that enter wasm do so in few large copies: each
//! crossing between JS and wasm costs ~50 µs, and platform streams deliver 4 KiB at a time
//! (edge-notes.md).

use std::io;

use bytes::Bytes;
use futures_util::stream;
use js_sys::Uint8Array;
use js_sys::futures::JsFuture;
use wasm_bindgen::prelude::*;

use berth::ByteStream;

#[wasm_bindgen(inline_js = r#"
export class ChunkReader {
  constructor(stream, size) {
    this.size = size;
    this.done = false;
    try {
      this.byob = stream.getReader({ mode: "byob" });
    } catch (_) {
      this.reader = stream.getReader();
    }
  }

  // The next chunk: at least `size` bytes unless the stream ends first; undefined at the end.
  async next() {
    if (this.done) return undefined;
    if (this.byob) {
      for (;;) {
        const view = new Uint8Array(this.size);
        const r = typeof this.byob.readAtLeast === "function"
          ? await this.byob.readAtLeast(this.size, view)
          : await this.byob.read(view);
        if (r.done) this.done = true;
        if (r.value && r.value.byteLength > 0) return r.value;
        if (this.done) return undefined;
      }
    }
    const held = [];
    let len = 0;
    while (len < this.size) {
      const r = await this.reader.read();
      if (r.done) { this.done = true; break; }
      const v = r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value);
      held.push(v);
      len += v.byteLength;
    }
    if (len === 0) return undefined;
    if (held.length === 1) return held[0];
    const out = new Uint8Array(len);
    let at = 0;
    for (const v of held) { out.set(v, at); at += v.byteLength; }
    return out;
  }

  cancel(reason) {
    this.done = true;
    const r = this.byob || this.reader;
    r.cancel(reason).catch(() => {});
  }
}

// A request to a mirror's upstream: redirects come back as they are (the caller follows them,
// without credentials on another origin); `ms` bounds the wait for the response head only,
// never the body that streams after it.
export async function upstreamFetch(url, method, accept, authorization, ms) {
  const headers = { "user-agent": "berth-worker" };
  if (accept) headers.accept = accept;
  if (authorization) headers.authorization = authorization;
  const c = new AbortController();
  const t = setTimeout(() => c.abort(), ms);
  try {
    return await fetch(url, { method, headers, redirect: "manual", signal: c.signal });
  } catch (e) {
    if (c.signal.aborted) throw new Error(`no answer in ${ms / 1000} s`);
    throw e;
  } finally {
    clearTimeout(t);
  }
}

export function randomHex(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function errorText(e) {
  if (e instanceof Error) return e.message;
  try { return String(e); } catch (_) { return "unknown error"; }
}
"#)]
extern "C" {
    pub type ChunkReader;

    #[wasm_bindgen(constructor)]
    pub fn new(stream: &web_sys::ReadableStream, size: u32) -> ChunkReader;

    #[wasm_bindgen(method)]
    fn next(this: &ChunkReader) -> js_sys::Promise;

    #[wasm_bindgen(method)]
    fn cancel(this: &ChunkReader, reason: &str);

    /// `fetch` for the mirror (see the JS above): a promise of a `Response`. Empty `accept`
    /// and `authorization` are not sent.
    #[wasm_bindgen(js_name = upstreamFetch)]
    pub fn upstream_fetch(
        url: &str,
        method: &str,
        accept: &str,
        authorization: &str,
        ms: u32,
    ) -> js_sys::Promise;

    /// `bytes` random bytes from `crypto.getRandomValues`, as lowercase hex.
    #[wasm_bindgen(js_name = randomHex)]
    pub fn random_hex(bytes: u32) -> String;

    /// The message of a thrown JS value.
    #[wasm_bindgen(js_name = errorText)]
    pub fn error_text(e: &JsValue) -> String;
}

/// How much a read from a platform stream gathers before crossing into wasm.
pub const READ_CHUNK: u32 = 1 << 20;

/// Cancels the platform stream if the Rust side drops it unfinished.
struct Reading(ChunkReader, bool);

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancel("dropped");
        }
    }
}

/// A platform stream as the core's byte stream, in chunks of about [`READ_CHUNK`].
pub fn read_stream(body: &web_sys::ReadableStream) -> ByteStream {
    let reader = Reading(ChunkReader::new(body, READ_CHUNK), false);
    Box::pin(stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match JsFuture::from(reader.0.next()).await {
            Ok(v) if v.is_undefined() => {
                reader.1 = true;
                None
            }
            Ok(v) => {
                let bytes = Bytes::from(Uint8Array::new(&v).to_vec());
                Some((Ok(bytes), Some(reader)))
            }
            Err(e) => {
                reader.1 = true;
                Some((Err(io::Error::other(error_text(&e))), None))
            }
        }
    }))
}
