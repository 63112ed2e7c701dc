// Names the wasm functions in a stack from the Worker's logs. The deployed module has no names
// and panics abort at once (worker/build.sh), so a panic logs only `RuntimeError: unreachable`
// and frames like `wasm-function[1234]:0x5678`; worker/build.sh keeps the same module with its
// name section beside it (index_bg.symbols.wasm, never uploaded).
//
//   node worker/symbols.mjs worker/build/index_bg.symbols.wasm < log     the log, frames named
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? new URL("build/index_bg.symbols.wasm", import.meta.url);
const bytes = new Uint8Array(readFileSync(file));
let at = 8;
const leb = () => {
    let n = 0, shift = 0, b;
    do { b = bytes[at++]; n += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return n;
};
const text = new TextDecoder();
const str = () => { const len = leb(); at += len; return text.decode(bytes.subarray(at - len, at)); };
// Walk the sections to the custom one called "name", and in it the function names (1).
const names = new Map();
while (at < bytes.length) {
    const id = bytes[at++], end = leb() + at;
    if (id === 0 && str() === "name") {
        while (at < end) {
            const sub = bytes[at++], subEnd = leb() + at;
            if (sub === 1) for (let n = leb(); n > 0; n--) names.set(leb(), str());
            at = subEnd;
        }
    }
    at = end;
}
if (names.size === 0) throw new Error(`no function names in ${file}`);
const log = readFileSync(0, "utf8");
process.stdout.write(log.replace(/wasm-function\[(\d+)\]/g, (m, i) => `${m} ${names.get(Number(i)) ?? "?"}`));
