// An upstream that logs in with Basic and redirects, for the mirror's tests (tests/worker.sh
// starts it):
//
//   node redirector.mjs FRONT_PORT BACK_PORT UPSTREAM USER:PASSWORD LOG
//
// 127.0.0.1:FRONT_PORT answers 401 with a Basic challenge unless the request carries
// USER:PASSWORD, and then redirects (307) to the same path on 127.0.0.1:BACK_PORT, another
// origin, which serves it from the registry at UPSTREAM (host:port). Every request is logged to
// LOG as a JSON line: which side, method, path, and the scheme of any Authorization header.
import { createServer } from "node:http";
import { appendFileSync } from "node:fs";

const [front, back, upstream, creds, log] = process.argv.slice(2);
const basic = "Basic " + Buffer.from(creds).toString("base64");
const note = (side, req) =>
  appendFileSync(log, JSON.stringify({
    side,
    method: req.method,
    path: req.url,
    auth: req.headers.authorization ? req.headers.authorization.split(" ")[0] : null,
  }) + "\n");

createServer((req, res) => {
  note("front", req);
  if (req.headers.authorization !== basic) {
    res.writeHead(401, { "www-authenticate": 'Basic realm="redirector"' });
    return res.end();
  }
  res.writeHead(307, { location: `http://127.0.0.1:${back}${req.url}` });
  res.end();
}).listen(Number(front), "127.0.0.1");

createServer(async (req, res) => {
  note("back", req);
  try {
    const r = await fetch(`http://${upstream}${req.url}`, {
      method: req.method,
      headers: req.headers.accept ? { accept: req.headers.accept } : {},
    });
    const headers = {};
    for (const [k, v] of r.headers) {
      if (!["connection", "transfer-encoding", "keep-alive"].includes(k)) headers[k] = v;
    }
    const body = req.method === "HEAD" ? undefined : Buffer.from(await r.arrayBuffer());
    res.writeHead(r.status, headers);
    res.end(body);
  } catch (e) {
    res.writeHead(502);
    res.end(String(e));
  }
}).listen(Number(back), "127.0.0.1");
