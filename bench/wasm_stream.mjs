// Times whole HTTP streams through a proxy-wasm module inside V8 (Node), with
// a small host that answers the proxy-wasm 0.2.1 calls the way Envoy does:
// header maps and buffers are returned in blocks the module allocates through
// `proxy_on_memory_allocate`, and a request held at its headers has its body
// buffered, so each body callback sees everything received so far.
//
// Every stream is one bench request (bench/bodies.py) and one small JSON-RPC
// answer, as in the Envoy bench: context create, request headers, request
// body in chunks, response headers, response body, log, done, delete. It
// prints, per body case, the µs per stream of each module given and the host
// calls one stream made, so the module's own work can be priced without
// Envoy, and every later change to it measured against the same baseline in
// the same process.
//
// Usage: node bench/wasm_stream.mjs [--streams N] [--rounds R] [--chunk BYTES]
//          [--sizes 1k,64k,512k] [--check] LABEL=MODULE.wasm[@CONFIG] ...
// CONFIG is the plugin configuration handed to proxy_on_configure (JSON for
// the filter, the item list for bench/wasm-floor).
//
// --check times nothing: every module given must be a build of the filter,
// and each must, for every body of every case, set x-context-id to exactly
// the body's contextId, copy no request body byte out twice, never write
// the body, make no more host calls that return data than the four a
// body-reading filter needs at 1 KiB (both header maps, both bodies), and
// keep its linear memory from growing over thousands of streams once warm;
// and it must export no callback the filter does not act on.
// It exits 1 on any failure.
//
// --sse EVENTS times, instead, streams whose answer is an event stream of
// EVENTS events (a Task, then status and artifact updates of that task, as
// a2a-sdk agents stream a 1.0 SendStreamingMessage), each event its own
// response body callback, and prints the µs per event of each module and
// the response body bytes it copied out.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  if (message) console.error(`wasm_stream: ${message}`);
  console.error(
    "usage: node bench/wasm_stream.mjs [--streams N] [--rounds R] [--chunk BYTES] [--sizes 1k,64k,512k] [--check] LABEL=MODULE.wasm[@CONFIG] ...",
  );
  process.exit(2);
}

const options = { streams: 0, rounds: 7, chunk: 16384, sizes: ["1k", "64k", "512k"], check: false, sse: 0 };
const modules = [];
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  const value = () => {
    if (i + 1 >= process.argv.length) usage(`${arg} needs a value`);
    return process.argv[++i];
  };
  if (arg === "--streams") options.streams = Number(value());
  else if (arg === "--rounds") options.rounds = Number(value());
  else if (arg === "--chunk") options.chunk = Number(value());
  else if (arg === "--sizes") options.sizes = value().split(",");
  else if (arg === "--check") options.check = true;
  else if (arg === "--sse") options.sse = Number(value());
  else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
  else {
    const eq = arg.indexOf("=");
    if (eq < 1) usage(`${arg}: expected LABEL=MODULE.wasm[@CONFIG]`);
    const rest = arg.slice(eq + 1);
    const at = rest.indexOf("@");
    modules.push({
      label: arg.slice(0, eq),
      path: at < 0 ? rest : rest.slice(0, at),
      config: at < 0 ? "" : rest.slice(at + 1),
    });
  }
}
if (modules.length === 0) usage("no module given");
for (const key of ["rounds", "chunk"]) {
  if (!Number.isInteger(options[key]) || options[key] < 1) usage(`--${key} must be a positive integer`);
}
if (!Number.isInteger(options.streams) || options.streams < 0) usage("--streams must be a whole number (0: by body size)");
for (const size of options.sizes) {
  if (!["1k", "64k", "512k"].includes(size)) usage(`--sizes: ${size} is not one of 1k, 64k, 512k`);
}
for (const m of modules) {
  if (!existsSync(m.path)) usage(`${m.label}: ${m.path} does not exist`);
}

// The bench's bodies, from the same generator as the Envoy bench.
function bodies(size, position, count) {
  const out = execFileSync("python3", [`${here}/bodies.py`, size, position, String(count)], { maxBuffer: 1 << 26 });
  return JSON.parse(out.toString()).map((b) => Buffer.from(b));
}

const RESPONSE_BODY = Buffer.from(
  '{"jsonrpc":"2.0","id":"b7d5","result":{"kind":"message","messageId":"5e2a","role":"agent","parts":[{"kind":"text","text":"ok"}]}}',
);

function requestHeaders(body) {
  return [
    [":authority", "127.0.0.1:10001"],
    [":path", "/"],
    [":method", "POST"],
    [":scheme", "http"],
    ["content-type", "application/json"],
    ["content-length", String(body.length)],
    ["x-forwarded-proto", "http"],
    ["x-request-id", "0b6f2a52-4c1e-4f5e-9d43-3f0a1c2b7e11"],
  ];
}

function responseHeaders() {
  return [
    [":status", "200"],
    ["content-type", "application/json"],
    ["content-length", String(RESPONSE_BODY.length)],
    ["date", "Thu, 26 Nov 2026 21:00:00 GMT"],
    ["server", "envoy"],
    ["x-envoy-upstream-service-time", "0"],
  ];
}

// Header maps are built and serialized once per body; each stream gets its
// own copy, which a module may change.
const templates = new WeakMap();
function requestTemplate(body) {
  let t = templates.get(body);
  if (!t) {
    t = requestHeaders(body);
    t.serialized = serializePairs(t);
    templates.set(body, t);
  }
  return t;
}

function fresh(template) {
  const copy = template.slice();
  copy.serialized = template.serialized;
  return copy;
}

// Envoy's serialization of a header map: the pair count, every key and value
// length, then every key and value each followed by a NUL (all u32 little
// endian).
function serializePairs(pairs) {
  const enc = pairs.map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
  let size = 4 + enc.length * 8;
  for (const [k, v] of enc) size += k.length + v.length + 2;
  const out = Buffer.alloc(size);
  out.writeUInt32LE(enc.length, 0);
  let at = 4;
  for (const [k, v] of enc) {
    out.writeUInt32LE(k.length, at);
    out.writeUInt32LE(v.length, at + 4);
    at += 8;
  }
  for (const [k, v] of enc) {
    k.copy(out, at);
    at += k.length + 1;
    v.copy(out, at);
    at += v.length + 1;
  }
  return out;
}

const RESPONSE_HEADERS = responseHeaders();
RESPONSE_HEADERS.serialized = serializePairs(RESPONSE_HEADERS);
const SSE_HEADERS = [[":status", "200"], ["content-type", "text/event-stream"], ["cache-control", "no-cache"],
  ["date", "Thu, 26 Nov 2026 21:00:00 GMT"], ["server", "envoy"]];
SSE_HEADERS.serialized = serializePairs(SSE_HEADERS);

function sseEvents(count) {
  const task = "5f0e6b2a-9c1d-4e8f-a7b3-0c2d4e6f8a1b";
  const context = "9f1c2e4a-5b6d-4c8e-a0f1-23456789abcd";
  const events = [];
  for (let i = 0; i < count; i++) {
    let result;
    if (i === 0) result = { task: { id: task, contextId: context, status: { state: "TASK_STATE_SUBMITTED" } } };
    else if (i % 2 === 1) {
      result = { statusUpdate: { taskId: task, contextId: context, status: { state: "TASK_STATE_WORKING",
        message: { messageId: `m-${i}`, role: "ROLE_AGENT", parts: [{ text: `working on step ${i}` }] } } } };
    } else {
      result = { artifactUpdate: { taskId: task, contextId: context, artifact: { artifactId: "a-1",
        parts: [{ text: `chunk ${i} of the answer, a sentence or two of generated text` }] }, append: true } };
    }
    events.push(Buffer.from(`data: ${JSON.stringify({ jsonrpc: "2.0", id: "1", result })}\n\n`));
  }
  return events;
}

const OK = 0;
const NOT_FOUND = 1;
const BAD_ARGUMENT = 2;

class Host {
  constructor(module, config) {
    this.config = Buffer.from(config);
    this.calls = new Map();
    this.shared = new Map();
    this.stream = null;
    const imports = { env: {}, wasi_snapshot_preview1: {} };
    const host = this;
    const count = (name) => host.calls.set(name, (host.calls.get(name) ?? 0) + 1);
    const env = {
      proxy_log: () => (count("proxy_log"), OK),
      proxy_get_current_time_nanoseconds: (out) => {
        count("proxy_get_current_time_nanoseconds");
        host.view().setBigUint64(out, process.hrtime.bigint(), true);
        return OK;
      },
      proxy_get_header_map_pairs: (map, dataOut, sizeOut) => {
        count("proxy_get_header_map_pairs");
        const pairs = host.headerMap(map);
        if (!pairs) return BAD_ARGUMENT;
        // Serialized once per map and content, so the host's own time stays
        // small next to the module's.
        pairs.serialized ??= serializePairs(pairs);
        return host.give(pairs.serialized, dataOut, sizeOut);
      },
      proxy_get_header_map_value: (map, keyPtr, keySize, dataOut, sizeOut) => {
        count("proxy_get_header_map_value");
        const pairs = host.headerMap(map);
        if (!pairs) return BAD_ARGUMENT;
        const key = host.string(keyPtr, keySize);
        const pair = pairs.find(([k]) => k === key);
        if (!pair) return NOT_FOUND;
        return host.give(Buffer.from(pair[1]), dataOut, sizeOut);
      },
      proxy_get_header_map_size: (map, sizeOut) => {
        count("proxy_get_header_map_size");
        const pairs = host.headerMap(map);
        if (!pairs) return BAD_ARGUMENT;
        host.view().setUint32(sizeOut, serializePairs(pairs).length, true);
        return OK;
      },
      proxy_replace_header_map_value: (map, keyPtr, keySize, valuePtr, valueSize) => {
        count("proxy_replace_header_map_value");
        const pairs = host.headerMap(map);
        if (!pairs) return BAD_ARGUMENT;
        const key = host.string(keyPtr, keySize);
        const kept = pairs.filter(([k]) => k !== key);
        kept.push([key, host.string(valuePtr, valueSize)]);
        pairs.splice(0, pairs.length, ...kept);
        pairs.serialized = undefined;
        return OK;
      },
      proxy_remove_header_map_value: (map, keyPtr, keySize) => {
        count("proxy_remove_header_map_value");
        const pairs = host.headerMap(map);
        if (!pairs) return BAD_ARGUMENT;
        const key = host.string(keyPtr, keySize);
        const kept = pairs.filter(([k]) => k !== key);
        pairs.splice(0, pairs.length, ...kept);
        pairs.serialized = undefined;
        return OK;
      },
      proxy_get_buffer_bytes: (kind, start, max, dataOut, sizeOut) => {
        count("proxy_get_buffer_bytes");
        const buffer = host.buffer(kind);
        if (!buffer) return NOT_FOUND;
        // Sizes arrive as signed i32: usize::MAX is -1.
        const end = Math.min(buffer.length, (start >>> 0) + (max >>> 0));
        const data = buffer.subarray(Math.min(start, end), end);
        if (kind === 0 && host.stream) host.stream.requestBytesCopied += data.length;
        if (kind === 1 && host.stream && host.stream.responseBytesCopied !== undefined) {
          host.stream.responseBytesCopied += data.length;
        }
        return host.give(data, dataOut, sizeOut);
      },
      proxy_set_buffer_bytes: () => (count("proxy_set_buffer_bytes"), BAD_ARGUMENT),
      proxy_get_shared_data: (keyPtr, keySize, dataOut, sizeOut, casOut) => {
        count("proxy_get_shared_data");
        const value = host.shared.get(host.string(keyPtr, keySize));
        if (!value) return NOT_FOUND;
        host.view().setUint32(casOut, value.cas, true);
        return host.give(value.data, dataOut, sizeOut);
      },
      proxy_set_shared_data: (keyPtr, keySize, valuePtr, valueSize) => {
        count("proxy_set_shared_data");
        const key = host.string(keyPtr, keySize);
        const cas = (host.shared.get(key)?.cas ?? 0) + 1;
        host.shared.set(key, { data: Buffer.from(host.bytes(valuePtr, valueSize)), cas });
        return OK;
      },
      proxy_define_metric: (_kind, _namePtr, _nameSize, idOut) => {
        count("proxy_define_metric");
        host.view().setUint32(idOut, host.calls.get("proxy_define_metric"), true);
        return OK;
      },
      proxy_increment_metric: () => (count("proxy_increment_metric"), OK),
    };
    const wasi = {
      random_get: (ptr, len) => {
        count("random_get");
        for (let i = 0; i < len; i++) host.view().setUint8(ptr + i, (Math.random() * 256) | 0);
        return 0;
      },
      environ_sizes_get: (countOut, sizeOut) => {
        host.view().setUint32(countOut, 0, true);
        host.view().setUint32(sizeOut, 0, true);
        return 0;
      },
      environ_get: () => 0,
      fd_write: () => 0,
      proc_exit: (code) => {
        throw new Error(`proc_exit(${code})`);
      },
    };
    for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
      if (kind !== "function") continue;
      const table = from === "env" ? env : from === "wasi_snapshot_preview1" ? wasi : null;
      if (!table) throw new Error(`import ${from}.${name} from an unknown module`);
      imports[from][name] =
        table[name] ??
        (() => {
          throw new Error(`host call ${from}.${name} is not emulated`);
        });
    }
    this.instance = new WebAssembly.Instance(module, imports);
    this.exports = this.instance.exports;
  }

  view() {
    // Memory may grow during any call; take a fresh view each time.
    return new DataView(this.exports.memory.buffer);
  }

  bytes(ptr, size) {
    return new Uint8Array(this.exports.memory.buffer, ptr, size);
  }

  string(ptr, size) {
    return Buffer.from(this.bytes(ptr, size)).toString();
  }

  give(data, dataOut, sizeOut) {
    let ptr = 0;
    if (data.length > 0) {
      ptr = this.exports.proxy_on_memory_allocate(data.length);
      if (ptr === 0) return BAD_ARGUMENT;
      this.bytes(ptr, data.length).set(data);
    }
    const view = this.view();
    view.setUint32(dataOut, ptr, true);
    view.setUint32(sizeOut, data.length, true);
    return OK;
  }

  headerMap(map) {
    const s = this.stream;
    if (!s) return null;
    if (map === 0) return s.requestHeaders;
    if (map === 2) return s.responseHeaders;
    return null;
  }

  buffer(kind) {
    if (kind === 7) return this.config;
    const s = this.stream;
    if (!s) return null;
    if (kind === 0) return s.requestBuffered;
    if (kind === 1) return s.responseBuffered;
    return null;
  }

  start() {
    const e = this.exports;
    e._initialize?.();
    e.proxy_on_context_create(1, 0);
    if (e.proxy_on_vm_start && !e.proxy_on_vm_start(1, 0)) throw new Error("proxy_on_vm_start refused");
    if (!e.proxy_on_configure(1, this.config.length)) throw new Error("proxy_on_configure refused the configuration");
  }

  // One stream whose answer is the event stream `events` (Buffers), each
  // event its own response body callback, as Envoy passes an SSE answer.
  runSse(id, body, events) {
    const e = this.exports;
    const s = {
      requestHeaders: fresh(requestTemplate(body)),
      responseHeaders: fresh(SSE_HEADERS),
      requestBuffered: body,
      responseBuffered: Buffer.alloc(0),
      held: false,
      requestBytesCopied: 0,
      responseBytesCopied: 0,
    };
    this.stream = s;
    e.proxy_on_context_create(id, 1);
    e.proxy_on_request_headers(id, s.requestHeaders.length, 0);
    e.proxy_on_request_body(id, body.length, 1);
    e.proxy_on_response_headers(id, s.responseHeaders.length, 0);
    events.forEach((event, n) => {
      s.responseBuffered = event;
      e.proxy_on_response_body(id, event.length, n + 1 === events.length ? 1 : 0);
    });
    e.proxy_on_delete?.(id);
    this.stream = null;
    return s;
  }

  // One stream, called the way Envoy's filter manager calls a Wasm filter.
  run(id, body, chunk) {
    const e = this.exports;
    const s = {
      requestHeaders: fresh(requestTemplate(body)),
      responseHeaders: fresh(RESPONSE_HEADERS),
      requestBuffered: Buffer.alloc(0),
      responseBuffered: RESPONSE_BODY,
      held: false,
      requestBytesCopied: 0,
    };
    this.stream = s;
    e.proxy_on_context_create(id, 1);
    s.held = e.proxy_on_request_headers(id, s.requestHeaders.length, 0) !== 0;
    // A held stream accumulates the body; once it continues, each
    // callback sees only the new chunk. (Views of the body, not copies.)
    let from = 0;
    for (let at = 0; at < body.length; at += chunk) {
      const to = Math.min(body.length, at + chunk);
      s.requestBuffered = body.subarray(s.held ? from : at, to);
      const action = e.proxy_on_request_body(id, s.requestBuffered.length, to === body.length ? 1 : 0);
      if (s.held && action === 0) s.held = false;
      if (!s.held) from = to;
    }
    e.proxy_on_response_headers(id, s.responseHeaders.length, 0);
    e.proxy_on_response_body(id, RESPONSE_BODY.length, 1);
    e.proxy_on_log?.(id);
    e.proxy_on_done?.(id);
    e.proxy_on_delete?.(id);
    this.stream = null;
    return s;
  }
}

const load = (path) => new WebAssembly.Module(readFileSync(path));

const contextIdOf = (body) => JSON.parse(body).params.message.contextId;
const setHeader = (stream) => stream.requestHeaders.filter(([k]) => k === "x-context-id").map(([, v]) => v);
// Host calls whose answer Envoy writes into module memory.
const DATA_CALLS = ["proxy_get_header_map_pairs", "proxy_get_header_map_value", "proxy_get_buffer_bytes",
  "proxy_get_shared_data", "proxy_get_property"];

// The functions the filter exports. Envoy enters the VM once per stream for
// every optional callback a module exports (proxy_on_log, proxy_on_done,
// response trailers, ...), used or not; the filter exports none it does not
// act on.
const FILTER_EXPORTS = new Set(["_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate",
  "proxy_on_vm_start", "proxy_on_configure", "proxy_on_context_create", "proxy_on_request_headers",
  "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_response_headers",
  "proxy_on_response_body", "proxy_on_delete"]);

function check() {
  const failures = [];
  for (const m of modules) {
    const module = load(m.path);
    for (const e of WebAssembly.Module.exports(module)) {
      if (e.kind === "function" && !FILTER_EXPORTS.has(e.name)) {
        failures.push(`${m.label}: exports ${e.name}, a callback the filter does not act on`);
      }
    }
    for (const size of options.sizes) {
      for (const position of ["first", "last"]) {
        const cases = bodies(size, position, 8);
        const h = new Host(module, m.config);
        h.start();
        const where = `${m.label} ${size} ${position}`;
        cases.forEach((body, n) => {
          h.calls.clear();
          const s = h.run(2 + n, body, options.chunk);
          const set = setHeader(s);
          if (set.length !== 1 || set[0] !== contextIdOf(body)) {
            failures.push(`${where}: x-context-id ${JSON.stringify(set)}, the body has ${contextIdOf(body)}`);
          }
          if (s.requestBytesCopied > body.length) {
            failures.push(`${where}: ${s.requestBytesCopied} request body bytes copied out of ${body.length}`);
          }
          if (h.calls.get("proxy_set_buffer_bytes")) failures.push(`${where}: the request body was written`);
          const dataCalls = DATA_CALLS.reduce((n, name) => n + (h.calls.get(name) ?? 0), 0);
          if (size === "1k" && dataCalls > 4) {
            failures.push(`${where}: ${dataCalls} host calls that return data (${[...h.calls].join(" ")})`);
          }
        });
        // Memory once warm: thousands of streams more must not grow it.
        let id = 100;
        for (let n = 0; n < 200; n++) h.run(id++, cases[n % cases.length], options.chunk);
        const warm = h.exports.memory.buffer.byteLength;
        const streams = Math.max(500, Math.min(5000, Math.floor((256 << 20) / cases[0].length)));
        for (let n = 0; n < streams; n++) h.run(id++, cases[n % cases.length], options.chunk);
        const grown = h.exports.memory.buffer.byteLength - warm;
        if (grown > 0) failures.push(`${where}: linear memory grew by ${grown} bytes over ${streams} streams`);
        console.log(`${where}: ${cases.length} bodies routed by their contextId; memory ${warm >> 10} KiB, `
          + `${grown > 0 ? "grew" : "unchanged"} over ${streams} more streams`);
      }
    }
  }
  if (failures.length) {
    console.error(`wasm_stream check: ${failures.length} failures`);
    for (const f of failures.slice(0, 40)) console.error(`  ${f}`);
    process.exit(1);
  }
  console.log("wasm_stream check: 0 failures");
}

if (options.check) {
  check();
  process.exit(0);
}

if (options.sse > 0) {
  const events = sseEvents(options.sse);
  const body = bodies("1k", "first", 1)[0];
  console.log(`node ${process.version}, ${options.rounds} rounds, ${events.length} events per stream`);
  console.log("");
  console.log("| module | µs per event | response bytes copied out per stream |");
  console.log("|---|---|---|");
  for (const m of modules) {
    const h = new Host(load(m.path), m.config);
    h.start();
    let id = 2;
    const copied = h.runSse(id++, body, events).responseBytesCopied;
    let best = Infinity;
    for (let round = 0; round < options.rounds; round++) {
      const streams = 20;
      const t0 = process.hrtime.bigint();
      for (let n = 0; n < streams; n++) h.runSse(id++, body, events);
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1000 / streams / events.length);
    }
    const total = events.reduce((n, e) => n + e.length, 0);
    console.log(`| ${m.label} | ${best.toFixed(3)} | ${copied} of ${total} |`);
  }
  process.exit(0);
}


console.log(
  `node ${process.version}, ${options.rounds} rounds per cell, request body in ${options.chunk}-byte chunks`,
);
console.log("");
const header = ["body", "contextId", ...modules.map((m) => `${m.label} µs/stream`)];
console.log(`| ${header.join(" | ")} |`);
console.log(`|${header.map(() => "---").join("|")}|`);
const callTables = [];
for (const size of options.sizes) {
  for (const position of ["first", "last"]) {
    const cases = bodies(size, position, 8);
    const streams = options.streams || Math.max(200, Math.floor((64 << 20) / cases[0].length));
    const hosts = modules.map((m) => {
      const h = new Host(load(m.path), m.config);
      h.start();
      return h;
    });
    // One stream per module first: what each host call returns, and a check
    // that a module that sets the header sets the body's own contextId.
    hosts.forEach((h, i) => {
      h.calls.clear();
      const s = h.run(2, cases[0], options.chunk);
      const expected = contextIdOf(cases[0]);
      const set = setHeader(s);
      if (set.length > 1 || (set.length === 1 && set[0] !== expected)) {
        throw new Error(`${modules[i].label}: x-context-id ${JSON.stringify(set)}, body has ${expected}`);
      }
      callTables.push({ size, position, label: modules[i].label, calls: new Map(h.calls), set: set.length === 1 });
    });
    const best = hosts.map(() => Infinity);
    let id = 3;
    for (let round = 0; round < options.rounds; round++) {
      // Modules take turns within a round, so drift hits all alike.
      hosts.forEach((h, i) => {
        const t0 = process.hrtime.bigint();
        for (let n = 0; n < streams; n++) h.run(id++, cases[n % cases.length], options.chunk);
        const us = Number(process.hrtime.bigint() - t0) / 1000 / streams;
        best[i] = Math.min(best[i], us);
      });
    }
    console.log(`| ${size} | ${position} | ${best.map((b) => b.toFixed(2)).join(" | ")} |`);
  }
}
console.log("");
console.log("Host calls in one stream:");
console.log("");
for (const t of callTables) {
  const calls = [...t.calls].map(([name, n]) => `${name.replace(/^proxy_/, "")} ${n}`).join(", ");
  console.log(`- ${t.size} ${t.position}, ${t.label}${t.set ? " (set the header)" : ""}: ${calls || "none"}`);
}
