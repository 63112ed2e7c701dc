// The local limit bench/worker.sh measures berth's Worker against: a request body streamed into
// R2 as it is (no hashing, no wasm, no session), the least a Worker can do with a push.
export default {
  async fetch(request, env) {
    if (request.method !== "PUT") return new Response("PUT a body\n", { status: 405 });
    const key = new URL(request.url).pathname.slice(1) || "blob";
    const obj = await env.BUCKET.put(key, request.body);
    return new Response(`${obj.size}\n`, { status: 201 });
  },
};
