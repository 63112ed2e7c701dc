// The web page in a real browser: Debian's chromium, headless, driven by playwright-core.
//
//   BASE=http://127.0.0.1:PORT OUT=DIR [CHROMIUM=/usr/bin/chromium] [HOME_NAME=serve] node ui.mjs
//
// Expects the content tests/ui.sh pushes. Prints `ok - ...` / `not ok - ...` per check,
// screenshots into OUT, the timings as `# ...` lines, and a last line `N passed, N failed`.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const BASE = process.env.BASE;
const OUT = process.env.OUT;
const HOME = process.env.HOME_NAME || "serve";
const HOST = new URL(BASE).host;
mkdirSync(OUT, { recursive: true });
let passed = 0, failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${HOME}: ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${HOME}: ${name}`);
    for (const line of String(e && e.stack || e).split("\n").slice(0, 6)) console.log("#   " + line);
  }
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
page.on("pageerror", (e) => problems.push(String(e)));
page.on("dialog", (d) => d.accept());

async function go(hash, selector) {
  await page.goto(BASE + "/" + hash);
  // A change of hash alone does not reload: wait for the page to have drawn this view.
  await page.waitForFunction((h) => document.body.dataset.route === h, hash, { timeout: 20000 });
  await page.waitForSelector(selector, { timeout: 20000 });
}
const shot = (name) => page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
const text = (sel) => page.locator(sel).innerText();

await check("the list shows the pushed repositories, and the private one not to anonymous", async () => {
  await go("#/", "#repos tbody tr td a");
  const t = await text("#repos");
  for (const r of ["pub/multi", "pub/multiarch", "pub/labelled"]) assert(t.includes(r), `${r} missing: ${t}`);
  const all = await page.content();
  assert(!all.includes("private/secret"), "private/secret shows to anonymous");
  assert(await page.locator("#signin").isVisible(), "sign-in form shows on a guarded registry");
  await shot("list");
});

await check("an anonymous visitor of a private repository sees nothing of it", async () => {
  await go("#/repo/private/secret", "#error");
  assert((await text("#error")).includes("Sign in"), await text("#error"));
  assert(await page.locator("#tags").count() === 0, "a tag table shows");
  await go("#/image/private/secret/v1", "#error");
  assert(await page.locator("#layers").count() === 0, "layers show");
  // A crafted link cannot steer the page's requests elsewhere.
  await go("#/image/pub/multi/..%2F..%2F_catalog", "#error");
  assert((await text("#error")).includes("Not a repository"), await text("#error"));
  // The API itself answers the same.
  const r = await page.evaluate(async () => (await fetch("/v2/private/secret/_berth/tags")).status);
  assert(r === 401, `extension answered ${r}`);
});

await check("a repository shows its tags and the pull commands", async () => {
  await go("#/repo/pub/multi", "#tags tbody tr");
  const t = await text("#tags");
  for (const tag of ["v1", "v2", "sbom"]) assert(t.includes(tag), `tag ${tag} missing: ${t}`);
  const pull = await text("#pull");
  for (const c of ["docker pull", "podman pull", "oras pull"]) {
    assert(pull.includes(`${c} ${HOST}/pub/multi:`), `${c} missing: ${pull}`);
  }
  assert(await page.locator("#pull button").count() === 3, "copy buttons");
  await shot("repository");
  await page.selectOption("#sort", "name");
  await page.waitForFunction(() => location.hash.includes("sort=name"));
  await page.waitForSelector("#tags tbody tr");
  const first = await page.locator("#tags tbody tr").first().getAttribute("data-tag");
  assert(first === "sbom", `by name, first is ${first}`);
});

await check("an index shows its platforms", async () => {
  await go("#/image/pub/multiarch/latest", "#platforms tbody tr");
  const t = await text("#platforms");
  assert(t.includes("linux/amd64") && t.includes("linux/arm64"), t);
  assert((await text("#facts")).includes("application/vnd.oci.image.index.v1+json"), "media type");
  await shot("index");
});

await check("an image shows its layers, config and referrers grouped by artifactType", async () => {
  await go("#/image/pub/multi/v1", "#config dl");
  assert(await page.locator("#layers tbody tr").count() === 3, "three layers");
  assert((await text("#config")).includes("linux/amd64"), await text("#config"));
  await page.waitForSelector("#referrers .artifact-type");
  const refs = await text("#referrers");
  assert(refs.includes("application/spdx+json"), refs);
  await shot("image");
  const href = await page.locator("#referrers a").first().getAttribute("href");
  await page.locator("#referrers a").first().click();
  await page.waitForFunction((h) => document.body.dataset.route === h, href);
  assert((await text("#facts")).includes("application/spdx+json"), "the referrer opens");
});

await check("labels, env, history and annotations with markup render as text", async () => {
  await go("#/image/pub/labelled/v1", "#labels");
  const labels = await text("#labels");
  assert(labels.includes("<script>window.__xss=1</script>"), labels);
  assert((await text("#env")).includes("<img src=x"), "env");
  assert((await text("#history")).includes("<script>"), "history");
  assert((await text("main")).includes('onerror="window.__xss=2"'), "annotation");
  assert(await page.locator("main script, main img, main b").count() === 0, "markup became elements");
  assert(await page.evaluate(() => window.__xss === undefined), "script ran");
  await shot("labelled");
});

await check("the keyboard filters and opens a repository", async () => {
  await go("#/", "#repos tbody tr");
  await page.focus("#filter");
  await page.keyboard.type("multiarch");
  await page.waitForFunction(() => document.querySelectorAll("#repos tbody tr").length === 1 && location.hash.includes("q="));
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  assert(focused === "pub/multiarch", `focus on ${focused}`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#tags tbody tr");
  assert(page.url().endsWith("#/repo/pub/multiarch"), page.url());
});

await check("at phone width nothing overflows sideways", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, sel, name] of [["#/", "#repos tbody tr", "phone-list"], ["#/image/pub/multi/v1", "#config dl", "phone-image"]]) {
    await go(hash, sel);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 390, `${hash}: ${w}px wide`);
    await shot(name);
  }
  await page.setViewportSize({ width: 1200, height: 900 });
});

await check("signing in shows private repositories; a tag deleted goes from the page", async () => {
  await go("#/", "#repos tbody tr");
  await page.fill("#user", "alice");
  await page.fill("#password", "wrong");
  await page.click("#signin button");
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("failed"));
  await page.fill("#password", "alice-pw");
  await page.click("#signin button");
  await page.waitForSelector("#who:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#repos") && document.querySelector("#repos").innerText.includes("private/secret"));
  assert(await page.evaluate(() => sessionStorage.length + localStorage.length) === 0, "nothing kept in storage");
  await page.click("a[href='#/repo/pub/multi']");
  await page.waitForSelector("tr[data-tag='v2'] button.danger");
  await shot("signed-in");
  await page.click("tr[data-tag='v2'] button.danger");
  await page.waitForSelector("tr[data-tag='v2']", { state: "detached" });
  assert((await text("#tags")).includes("v1"), "v1 stays");
  const tags = await page.evaluate(async () => (await (await fetch("/v2/pub/multi/tags/list")).json()).tags);
  assert(!tags.includes("v2") && tags.includes("v1"), JSON.stringify(tags));
  await page.click("#signout");
  await page.waitForSelector("#signin:not([hidden])");
  // The view draws again without the delete buttons.
  await page.waitForFunction(() => document.querySelector("#tags tbody tr") && !document.querySelector("button.danger"));
});

await check("10,000 tags: the repository page shows the first page and pages on", async () => {
  let t0 = Date.now();
  await go("#/repo/pub/many", "#tags tbody tr");
  const ms = Date.now() - t0;
  assert(await page.locator("#tags tbody tr").count() === 50, "50 rows");
  const pager = await text(".pager");
  const total = process.env.MANY_TAGS || "10001";
  assert(pager.includes(`of ${total} tags`), pager);
  t0 = Date.now();
  await page.selectOption("#sort", "name");
  await page.waitForFunction(() => location.hash.includes("sort=name"));
  await page.waitForSelector("tr[data-tag='t00000']");
  const byName = Date.now() - t0;
  t0 = Date.now();
  await page.click("a[rel=next]");
  await page.waitForSelector("tr[data-tag='t00050']");
  const next = Date.now() - t0;
  t0 = Date.now();
  await go("#/", "#repos tbody tr");
  const list = Date.now() - t0;
  console.log(`# ${HOME}: ${total} tags: repository page (newest first) ${ms} ms, by name ${byName} ms, next page ${next} ms; repository list ${list} ms`);
});

await check("no script errors and no CSP violations on the way", async () => {
  const real = problems.filter((p) => !/Failed to load resource: the server responded with a status of (401|404)/.test(p));
  assert(real.length === 0, real.join("\n"));
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
