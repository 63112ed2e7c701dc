// berth's web page: reads the registry's own API (/v2/) and its read-only extension
// (/v2/_berth/...). Everything that came from the registry is put on the page as text
// (textContent), never as markup.
"use strict";

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const PAGE = 50;

// The signed-in user's credentials live in this variable only: never in storage, gone when
// the page is closed or reloaded. Requests carry them as Basic, which the API checks exactly
// as it checks any client.
let credentials = null;
let username = null;

// ---------------------------------------------------------------- small helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function size(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

function when(secs) {
  if (!secs) return "—";
  return new Date(secs * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function short(digest) {
  return digest ? digest.replace(/^(sha256:|sha512:)?(.{12}).*$/, "$1$2…") : "—";
}

function status(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.className = bad ? "error" : "";
}

function enc(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function link(hash, ...text) {
  return el("a", { href: "#" + hash }, ...text);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers || {});
  if (credentials) headers["Authorization"] = "Basic " + credentials;
  const resp = await fetch(path, { method: opts.method || "GET", headers, cache: "no-store" });
  if (!resp.ok && resp.status !== 202) {
    let msg = resp.status + " " + resp.statusText;
    try {
      const body = await resp.json();
      if (body.errors && body.errors[0]) msg = body.errors[0].code + ": " + body.errors[0].message;
    } catch (_) { /* not JSON */ }
    if (resp.status === 401 || resp.status === 403) {
      msg = credentials ? "You may not see this." : "Sign in to see this.";
    }
    throw new ApiError(resp.status, msg);
  }
  return resp;
}

async function json(path, opts) {
  return (await api(path, opts)).json();
}

function copyButton(text) {
  return el("button", {
    type: "button",
    "aria-label": "Copy " + text,
    onclick: async (ev) => {
      const b = ev.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = "Copied";
      } catch (_) {
        const r = document.createRange();
        r.selectNodeContents(b.previousSibling);
        getSelection().removeAllRanges();
        getSelection().addRange(r);
        b.textContent = "Selected";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 1500);
    },
  }, "Copy");
}

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

// Each route() is one generation; a view that finishes after the visitor moved on draws nothing.
let generation = 0;
class Stale extends Error {}

function show(g, ...nodes) {
  if (g !== generation) throw new Stale();
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

// ---------------------------------------------------------------- sign in and out

async function sessionSetup() {
  const form = document.getElementById("signin");
  const who = document.getElementById("who");
  // An open registry answers /v2/ to anyone: nothing to sign in to.
  let guarded = false;
  try {
    const r = await fetch("/v2/", { cache: "no-store" });
    guarded = r.status === 401;
  } catch (_) { /* offline */ }
  const render = () => {
    form.hidden = !guarded || !!username;
    who.hidden = !username;
    document.getElementById("whoname").textContent = username ? "Signed in as " + username : "";
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = document.getElementById("user").value;
    const pass = document.getElementById("password").value;
    const cred = btoa(unescape(encodeURIComponent(user + ":" + pass)));
    const r = await fetch("/v2/", { headers: { Authorization: "Basic " + cred }, cache: "no-store" });
    if (!r.ok) { status("Sign-in failed: wrong user or password.", true); return; }
    credentials = cred;
    username = user;
    document.getElementById("password").value = "";
    status("Signed in as " + user + ".");
    render();
    route();
  });
  document.getElementById("signout").addEventListener("click", () => {
    credentials = null;
    username = null;
    status("Signed out.");
    render();
    route();
  });
  render();
}

// ---------------------------------------------------------------- the repository list

async function listView(params) {
  const g = generation;
  crumbs(el("span", {}, "Repositories"));
  const q = params.get("q") || "";
  const last = params.get("last") || "";
  const filter = el("input", { type: "search", id: "filter", value: q, placeholder: "Filter by name", "aria-label": "Filter repositories by name" });
  let timer = null;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      location.hash = "#/?" + new URLSearchParams(filter.value ? { q: filter.value } : {});
    }, 250);
  });
  const table = el("table", { class: "wide", id: "repos" },
    el("thead", {}, el("tr", {}, el("th", {}, "Repository"), el("th", { class: "num" }, "Tags"),
      el("th", { class: "num" }, "Size"), el("th", {}, "Last push"))));
  const tbody = el("tbody");
  table.append(tbody);
  const pager = el("div", { class: "pager" });
  show(g, el("h1", {}, "Repositories"), el("div", { class: "toolbar" }, filter), table, pager);
  if (q) { filter.focus(); filter.setSelectionRange(q.length, q.length); }
  const data = await json("/v2/_berth/repositories?" + new URLSearchParams({ n: PAGE, q, last }));
  for (const r of data.repositories) {
    tbody.append(el("tr", {},
      el("td", { "data-label": "Repository" }, link("/repo/" + enc(r.name), r.name)),
      el("td", { class: "num", "data-label": "Tags" }, String(r.tags)),
      el("td", { class: "num", "data-label": "Size" }, size(r.size)),
      el("td", { "data-label": "Last push" }, when(r.lastPush))));
  }
  if (!data.repositories.length) {
    tbody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" },
      q ? "No repository you may see matches." : (credentials ? "No repository you may see." : "No repository to show. Signing in may show more."))));
  }
  if (last) pager.append(el("a", { href: "#/?" + new URLSearchParams(q ? { q } : {}) }, "First page"));
  if (data.next) pager.append(el("a", { href: "#/?" + new URLSearchParams(Object.assign(q ? { q } : {}, { last: data.next })), rel: "next" }, "Next page"));
  gcPanel(g);
}

async function gcPanel(g) {
  // Registry-wide: shown to whoever may list the catalog.
  let data;
  try { data = await json("/v2/_berth/gc"); } catch (_) { return; }
  if (g !== generation) return;
  const main = document.getElementById("main");
  const box = el("section", { id: "gc" }, el("h2", {}, "Garbage collection"));
  if (!data.last) box.append(el("p", { class: "muted" }, "No pass has run yet."));
  else box.append(el("dl", {},
    el("dt", {}, "Last pass"), el("dd", {}, when(data.last.started) + (data.last.finished ? " – " + when(data.last.finished) : "")),
    el("dt", {}, "Result"), el("dd", {}, data.last.summary || "")));
  main.append(box);
}

// ---------------------------------------------------------------- a repository

function pullCommands(host, ref) {
  const box = el("section", { id: "pull" }, el("h2", {}, "Pull"));
  for (const cmd of ["docker pull " + host + "/" + ref, "podman pull " + host + "/" + ref, "oras pull " + host + "/" + ref]) {
    box.append(el("div", { class: "pull" }, el("code", {}, cmd), copyButton(cmd)));
  }
  return box;
}

async function repoView(name, params) {
  const g = generation;
  const sort = params.get("sort") === "name" ? "name" : "newest";
  const start = Math.max(0, parseInt(params.get("start") || "0", 10) || 0);
  crumbs(link("/", "Repositories"), el("span", {}, name));
  const summary = await json("/v2/" + enc(name) + "/_berth/summary");
  const mayDelete = summary.actions.includes("delete");
  const page = await json("/v2/" + enc(name) + "/_berth/tags?" + new URLSearchParams({ sort, start, n: PAGE }));
  const select = el("select", { id: "sort", "aria-label": "Sort tags" },
    el("option", { value: "newest", selected: sort === "newest" }, "Newest first"),
    el("option", { value: "name", selected: sort === "name" }, "By name"));
  select.addEventListener("change", () => { location.hash = "#/repo/" + enc(name) + "?sort=" + select.value; });
  const tbody = el("tbody");
  for (const t of page.tags) {
    const what = t.platforms && t.platforms.length
      ? el("span", { class: "chips" }, t.platforms.map((p) => el("span", {}, p)))
      : el("span", { class: "muted" }, t.artifactType || kind(t.mediaType));
    tbody.append(el("tr", { "data-tag": t.tag },
      el("td", { "data-label": "Tag" }, link("/image/" + enc(name) + "/" + encodeURIComponent(t.tag), t.tag)),
      el("td", { "data-label": "Digest", class: "mono", title: t.digest }, link("/image/" + enc(name) + "/" + t.digest, short(t.digest))),
      el("td", { "data-label": "Platforms" }, what),
      el("td", { class: "num", "data-label": "Size" }, size(t.size)),
      el("td", { "data-label": "Pushed" }, when(t.pushed)),
      mayDelete ? el("td", {}, el("button", {
        type: "button", class: "danger", "aria-label": "Delete tag " + t.tag,
        onclick: () => deleteRef(name, t.tag, "tag " + name + ":" + t.tag, () => route()),
      }, "Delete")) : null));
  }
  const table = el("table", { class: "wide", id: "tags" },
    el("thead", {}, el("tr", {}, el("th", {}, "Tag"), el("th", {}, "Digest"), el("th", {}, "Platforms / type"),
      el("th", { class: "num" }, "Size"), el("th", {}, "Pushed"), mayDelete ? el("th", {}, "") : null)),
    tbody);
  const pager = el("div", { class: "pager" });
  const at = (s) => "#/repo/" + enc(name) + "?" + new URLSearchParams({ sort, start: s });
  if (start > 0) pager.append(el("a", { href: at(Math.max(0, start - PAGE)) }, "Previous"));
  pager.append(el("span", { class: "muted" }, page.total ? (start + 1) + "–" + Math.min(start + PAGE, page.total) + " of " + page.total + " tags" : "No tags"));
  if (start + PAGE < page.total) pager.append(el("a", { href: at(start + PAGE), rel: "next" }, "Next"));
  const first = page.tags[0] ? page.tags[0].tag : "latest";
  show(g,
    el("h1", {}, name),
    el("dl", { id: "summary" },
      el("dt", {}, "Tags"), el("dd", {}, String(summary.tags)),
      el("dt", {}, "Size"), el("dd", {}, size(summary.size) + (summary.usage && summary.usage.at ? " (counted " + when(summary.usage.at) + ")" : "")),
      el("dt", {}, "Last push"), el("dd", {}, when(summary.lastPush)),
      el("dt", {}, "You may"), el("dd", {}, summary.actions.join(", ") || "—")),
    pullCommands(location.host, name + ":" + first),
    el("h2", {}, "Tags"),
    el("div", { class: "toolbar" }, select),
    table, pager);
}

function kind(mediaType) {
  if (!mediaType) return "—";
  if (/index|list/.test(mediaType)) return "index";
  if (/manifest/.test(mediaType)) return "image";
  return mediaType;
}

async function deleteRef(name, ref, what, then) {
  if (!confirm("Delete " + what + "? This cannot be undone.")) return;
  try {
    await api("/v2/" + enc(name) + "/manifests/" + ref, { method: "DELETE" });
    status("Deleted " + what + ".");
    then();
  } catch (e) {
    status("Could not delete " + what + ": " + e.message, true);
  }
}

// ---------------------------------------------------------------- an image

function kv(obj) {
  const dl = el("dl");
  for (const [k, v] of Object.entries(obj || {})) {
    dl.append(el("dt", {}, k), el("dd", {}, typeof v === "string" ? v : JSON.stringify(v)));
  }
  return dl;
}

async function imageView(name, ref) {
  const g = generation;
  crumbs(link("/", "Repositories"), link("/repo/" + enc(name), name), el("span", {}, ref.startsWith("sha") ? short(ref) : ref));
  const resp = await api("/v2/" + enc(name) + "/manifests/" + ref, { headers: { Accept: MANIFEST_TYPES + ", */*" } });
  const digest = resp.headers.get("docker-content-digest");
  const text = await resp.text();
  const m = JSON.parse(text);
  const mediaType = m.mediaType || resp.headers.get("content-type");
  const summary = await json("/v2/" + enc(name) + "/_berth/summary").catch(() => ({ actions: [] }));
  const parts = [el("h1", {}, name + (ref.startsWith("sha") ? "@" + short(ref) : ":" + ref))];
  const facts = el("dl", { id: "facts" },
    el("dt", {}, "Media type"), el("dd", {}, mediaType || "—"),
    el("dt", {}, "Digest"), el("dd", { class: "mono" }, digest || "—"),
    el("dt", {}, "Manifest size"), el("dd", {}, size(new TextEncoder().encode(text).length)));
  if (m.artifactType) facts.append(el("dt", {}, "Artifact type"), el("dd", {}, m.artifactType));
  if (m.subject) facts.append(el("dt", {}, "Subject"), el("dd", {}, link("/image/" + enc(name) + "/" + m.subject.digest, m.subject.digest)));
  parts.push(facts, pullCommands(location.host, name + (ref.startsWith("sha") ? "@" : ":") + ref));
  if (Array.isArray(m.manifests)) {
    const tbody = el("tbody");
    for (const c of m.manifests) {
      const p = c.platform ? [c.platform.os, c.platform.architecture, c.platform.variant].filter(Boolean).join("/") : (c.artifactType || "—");
      tbody.append(el("tr", {},
        el("td", { "data-label": "Platform" }, p),
        el("td", { "data-label": "Digest", class: "mono" }, link("/image/" + enc(name) + "/" + c.digest, short(c.digest))),
        el("td", { class: "num", "data-label": "Size" }, size(c.size)),
        el("td", { "data-label": "Media type" }, c.mediaType || "")));
    }
    parts.push(el("h2", {}, "Platforms"), el("table", { class: "wide", id: "platforms" },
      el("thead", {}, el("tr", {}, el("th", {}, "Platform"), el("th", {}, "Digest"), el("th", { class: "num" }, "Size"), el("th", {}, "Media type"))), tbody));
  }
  if (m.config || Array.isArray(m.layers)) {
    const layers = m.layers || [];
    const total = layers.reduce((a, l) => a + (l.size || 0), 0) + ((m.config && m.config.size) || 0);
    const tbody = el("tbody");
    layers.forEach((l, i) => tbody.append(el("tr", {},
      el("td", { class: "num", "data-label": "#" }, String(i + 1)),
      el("td", { "data-label": "Digest", class: "mono", title: l.digest }, short(l.digest)),
      el("td", { class: "num", "data-label": "Size" }, size(l.size)),
      el("td", { "data-label": "Media type" }, l.mediaType || ""))));
    parts.push(el("h2", {}, "Layers"), el("p", { class: "muted" }, layers.length + " layers, " + size(total) + " with the config"),
      el("table", { class: "wide", id: "layers" },
        el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Digest"), el("th", { class: "num" }, "Size"), el("th", {}, "Media type"))), tbody));
    if (m.config) parts.push(await configSection(name, m.config));
  }
  if (m.annotations) parts.push(el("h2", {}, "Annotations"), kv(m.annotations));
  const refs = el("section", { id: "referrers" }, el("h2", {}, "Referrers"));
  parts.push(refs);
  if (digest && summary.actions.includes("delete")) {
    parts.push(el("p", {}, el("button", {
      type: "button", class: "danger", id: "delete-manifest",
      onclick: () => deleteRef(name, digest, "manifest " + short(digest) + " (and every tag on it)", () => { location.hash = "#/repo/" + enc(name); }),
    }, "Delete this manifest")));
  }
  show(g, ...parts);
  if (digest) referrers(name, digest, refs);
}

async function configSection(name, desc) {
  const box = el("section", { id: "config" }, el("h2", {}, "Config"));
  if (!/json/.test(desc.mediaType || "") || desc.size > 4 << 20) {
    box.append(el("p", { class: "muted" }, (desc.mediaType || "") + ", " + size(desc.size)));
    return box;
  }
  let c;
  try {
    c = JSON.parse(await (await api("/v2/" + enc(name) + "/blobs/" + desc.digest)).text());
  } catch (e) {
    box.append(el("p", { class: "error" }, "Could not read the config: " + e.message));
    return box;
  }
  const cfg = c.config || {};
  const facts = el("dl");
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(el("dt", {}, k), el("dd", {}, v)); };
  add("OS / architecture", [c.os, c.architecture, c.variant].filter(Boolean).join("/"));
  add("Created", c.created);
  add("Entrypoint", cfg.Entrypoint ? JSON.stringify(cfg.Entrypoint) : null);
  add("Cmd", cfg.Cmd ? JSON.stringify(cfg.Cmd) : null);
  add("Working dir", cfg.WorkingDir);
  add("User", cfg.User);
  box.append(facts);
  if (cfg.Env && cfg.Env.length) box.append(el("h3", {}, "Environment"), el("pre", { id: "env" }, cfg.Env.join("\n")));
  if (cfg.Labels && Object.keys(cfg.Labels).length) {
    const labels = kv(cfg.Labels);
    labels.id = "labels";
    box.append(el("h3", {}, "Labels"), labels);
  }
  if (Array.isArray(c.history) && c.history.length) {
    const ol = el("ol", { id: "history" });
    for (const h of c.history) {
      ol.append(el("li", {}, el("code", {}, h.created_by || h.comment || "—"), h.empty_layer ? el("span", { class: "muted" }, " (no layer)") : null));
    }
    box.append(el("h3", {}, "History"), ol);
  }
  return box;
}

async function referrers(name, digest, box) {
  let idx;
  try { idx = await json("/v2/" + enc(name) + "/referrers/" + digest); } catch (e) {
    box.append(el("p", { class: "error" }, e.message));
    return;
  }
  const list = idx.manifests || [];
  if (!list.length) { box.append(el("p", { class: "muted" }, "Nothing refers to this manifest.")); return; }
  const groups = new Map();
  for (const d of list) {
    const k = d.artifactType || "(no artifact type)";
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(d);
  }
  for (const [type, ds] of groups) {
    const ul = el("ul");
    for (const d of ds) {
      const note = d.annotations && d.annotations["org.opencontainers.image.created"];
      ul.append(el("li", {}, link("/image/" + enc(name) + "/" + d.digest, short(d.digest)), " ", size(d.size), note ? " · " + note : ""));
    }
    box.append(el("h3", { class: "artifact-type" }, type), ul);
  }
}

// ---------------------------------------------------------------- routing

// Names and references as the spec allows them: a link crafted with anything else (`..`, `?`)
// must not steer the page's requests elsewhere.
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const REF = /^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$/;
function checked(name, ref) {
  if (!NAME.test(name) || (ref !== undefined && !REF.test(ref))) throw new Error("Not a repository name or reference.");
}

async function route() {
  const g = ++generation;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  status("");
  try {
    if (path.startsWith("/repo/")) {
      const name = decodeURIComponent(path.slice(6));
      checked(name);
      await repoView(name, params);
    } else if (path.startsWith("/image/")) {
      const rest = path.slice(7);
      const cut = rest.lastIndexOf("/");
      const [name, ref] = [decodeURIComponent(rest.slice(0, cut)), decodeURIComponent(rest.slice(cut + 1))];
      checked(name, ref);
      await imageView(name, ref);
    } else {
      await listView(params);
    }
  } catch (e) {
    if (e instanceof Stale || g !== generation) return;
    show(g, el("h1", {}, "Not shown"), el("p", { class: "error", id: "error" }, e.message));
  }
  // Which view is on the page, for tests to wait on.
  if (g === generation) document.body.dataset.route = location.hash;
}

window.addEventListener("hashchange", async () => {
  await route();
  // Keyboard users land on the new content, unless a view put the focus somewhere already.
  if (!document.activeElement || document.activeElement === document.body) {
    document.getElementById("main").focus({ preventScroll: true });
  }
});
document.addEventListener("DOMContentLoaded", async () => {
  await sessionSetup();
  await route();
});
