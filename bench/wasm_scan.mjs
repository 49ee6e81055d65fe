// Runs a wasm32-wasip1 command module (examples/scan_wasm.rs) under Node's
// WASI, so the filter's extractor is timed inside V8, the engine Envoy uses.
// Usage: node bench/wasm_scan.mjs MODULE.wasm
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";

const path = process.argv[2];
if (!path) {
  console.error("usage: node bench/wasm_scan.mjs MODULE.wasm");
  process.exit(2);
}
const wasi = new WASI({ version: "preview1", args: [path, ...process.argv.slice(3)], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(path));
// The library also holds the filter's proxy-wasm entry points; their host
// imports are never called here, so each one only throws.
const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (from === "env" && kind === "function") {
    imports.env ??= {};
    imports.env[name] = () => {
      throw new Error(`host import env.${name} called`);
    };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter's `proxy_wasm::main!` also exports `_initialize`, which Node's
// WASI refuses next to `_start`; hand it only what a command needs.
const { memory, _start } = instance.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
