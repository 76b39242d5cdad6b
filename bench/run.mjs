// `make bench`: this worker under local workerd against the official Node
// reference server (in memory and file-backed) and a do-nothing Durable
// Object baseline, same machine, same run, same workloads; prints a table
// with ratios and writes JSON. Loopback only; every workload is bounded in
// time and count. `--smoke` runs everything tiny (a few seconds) and fails
// if any figure is missing: that is what `make test` runs.
//
//   node bench/run.mjs [--smoke] [--out FILE]
import { spawn } from "node:child_process"
import { readFileSync, statSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import path from "node:path"
import { gzipSync } from "node:zlib"
import { ROOT } from "../miniflare-tests/mf.mjs"
import { baseline, node, ours, oursInObject } from "./servers.mjs"
import { authCost } from "./auth-cost.mjs"
import { missingFigures } from "./smoke-check.mjs"
import { appends, catchUp, fanOut, heldFloor, idleSse, longPollWall, producerBatches, transport, workerOnly } from "./workloads.mjs"

const smoke = process.argv.includes("--smoke")
const outIdx = process.argv.indexOf("--out")
const out = outIdx > 0 ? process.argv[outIdx + 1] : null
const P = smoke
  ? { duration: 300, mb: 1, readers: 5, messages: 5, interval: 50, idle: 20, idleMs: 0, wall: 20, wallAppends: 3, workerOnly: 200 }
  : { duration: 4000, mb: 10, readers: 100, messages: 100, interval: 50, idle: Number(process.env.BENCH_IDLE ?? 5_000), idleMs: 12_000, wall: 2000, wallAppends: 20, workerOnly: 20_000 }
const uniq = (p) => `${p}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Bundle sizes, and the first request after `wrangler dev` reports ready. */
async function bundleAndColdStart() {
  const wasm = readFileSync(path.join(ROOT, "build/index_bg.wasm"))
  const js = readFileSync(path.join(ROOT, "build/index.js"))
  const result = { wasm_bytes: wasm.length, wasm_gzip_bytes: gzipSync(wasm).length, js_bytes: statSync(path.join(ROOT, "build/index.js")).size, js_gzip_bytes: gzipSync(js).length }
  if (smoke) return result
  const port = 18000 + Math.floor(Math.random() * 2000)
  const t0 = performance.now()
  const child = spawn("bash", ["-c", `source scripts/env.sh && exec wrangler dev --ip 127.0.0.1 --port ${port} --persist-to .wrangler/bench-state`], {
    cwd: ROOT,
    detached: true,
    stdio: "ignore",
  })
  try {
    const base = `http://127.0.0.1:${port}`
    for (let i = 0; i < 1200; i++) {
      try {
        await fetch(`${base}/`)
        break
      } catch {
        await sleep(100)
      }
    }
    result.wrangler_ready_ms = performance.now() - t0
    const s = performance.now()
    const r = await fetch(`${base}/v1/stream/${uniq("cold")}`, { method: "PUT", headers: { "content-type": "text/plain" } })
    result.first_request_ms = performance.now() - s
    result.first_request_status = r.status
    const s2 = performance.now()
    await fetch(`${base}/v1/stream/${uniq("warm")}`, { method: "PUT", headers: { "content-type": "text/plain" } })
    result.second_request_ms = performance.now() - s2
  } finally {
    process.kill(-child.pid, "SIGTERM")
  }
  return result
}

async function measure(srv) {
  const r = {}
  transport.dropped = 0
  r.appends_16x16 = await appends(srv, { writers: 16, pathFor: (i) => `/v1/stream/${uniq(`a${i}`)}`, durationMs: P.duration, bodyBytes: 100 })
  const hot = `/v1/stream/${uniq("hot")}`
  r.appends_hot = await appends(srv, { writers: 16, pathFor: () => hot, durationMs: P.duration, bodyBytes: 100 })
  r.producers = await producerBatches(srv, { producers: 4, batch: 10, durationMs: P.duration })
  r.catch_up = await catchUp(srv, { mb: P.mb })
  if (srv.stats) r.worker_only = await workerOnly(srv, { requests: P.workerOnly, method: "OPTIONS", path: "/v1/stream/x" })
  r.transport_dropped = transport.dropped
  return r
}

async function measureBaseline(srv) {
  const w = (mode, hot) => {
    const name = uniq(mode)
    return appends(srv, { writers: 16, pathFor: (i) => `/${mode}/${hot ? name : `${name}-${i}`}`, durationMs: P.duration, bodyBytes: 100, setup: false })
  }
  return {
    echo_16x16: await w("echo", false),
    insert_16x16: await w("insert", false),
    insert_hot: await w("insert", true),
    worker_only: await workerOnly(srv, { requests: P.workerOnly, method: "POST", path: `/hold-worker/${uniq("w")}` }),
  }
}
/** The do-nothing Worker's shapes of an idle reader (baseline-worker.mjs). */
const floorShapes = [
  ["hold-worker", "the Worker holds the request"],
  ["hold-object", "the object holds the request"],
  ["hold-bridge", "the Worker holds the request and a hibernatable WebSocket to the object"],
]

const results = { date: new Date().toISOString(), machine: `${cpus().length} cores, ${cpus()[0]?.model ?? "?"}`, smoke, params: P, servers: {} }
results.bundle = await bundleAndColdStart()
for (const start of [ours, () => node(false), () => node(true)]) {
  const srv = await start()
  try {
    results.servers[srv.name] = await measure(srv)
  } finally {
    await srv.stop()
  }
}
// Live readers: the bridge against readers held in the object, and Node;
// the only memory-per-reader figures the run takes, each server fresh.
results.live = {}
for (const start of [ours, oursInObject, () => node(false), () => node(true)]) {
  const srv = await start()
  try {
    const r = {}
    // Idle readers first: aborted long-polls stay in the Worker until their
    // deadline under Miniflare, which does not pass the disconnect on.
    r.idle_sse = await idleSse(srv, { readers: P.idle, idleMs: srv.stats ? P.idleMs : 0 })
    results.live[srv.name] = r
  } finally {
    await srv.stop()
  }
}
results.auth = await authCost({ rounds: smoke ? 20 : 1000 })
{
  const srv = await baseline()
  try {
    results.baseline = await measureBaseline(srv)
  } finally {
    await srv.stop()
  }
}
// The runtime's floor for an idle live reader, as many readers as the idle
// SSE workload, each shape in a fresh workerd (an RSS delta in a process that
// already freed memory reads low).
for (const [mode] of floorShapes) {
  const srv = await baseline()
  try {
    results.baseline[mode] = await heldFloor(srv, { readers: P.idle, mode })
  } finally {
    await srv.stop()
  }
}
// Live fan-out, every server in a fresh process (no earlier workload's
// leftovers weigh on one of them), against the runtime's floor: a
// do-nothing object holding long-polls (baseline-worker.mjs, /poll-object/)
// and a do-nothing bridge for SSE (/hold-bridge/), each also with one SQLite
// insert per append before it wakes anyone (`sql/`: the least a durable
// server of that shape does). The only fan-out figures the run takes: one
// workload, one figure.
const floorPolls = async () => ({ ...(await baseline()), name: "floor", prefix: "/poll-object/", ssePrefix: "/hold-bridge/" })
const floorDurable = async () => ({ ...(await baseline()), name: "floor, durable", prefix: "/poll-object/sql/", ssePrefix: "/hold-bridge/sql/" })
results.fanout = {}
for (const start of [floorPolls, floorDurable, ours, oursInObject, () => node(false), () => node(true)]) {
  const srv = await start()
  try {
    const prefix = srv.prefix ?? "/v1/stream/"
    results.fanout[srv.name] = {
      long_poll: await fanOut(srv, { kind: "long-poll", readers: P.readers, messages: P.messages, intervalMs: P.interval, prefix }),
      sse: await fanOut(srv, { kind: "sse", readers: P.readers, messages: P.messages, intervalMs: P.interval, prefix: srv.ssePrefix ?? prefix }),
      wall: await longPollWall(srv, { readers: P.wall, appends: P.wallAppends, prefix }),
    }
  } finally {
    await srv.stop()
  }
}

// The table: our figure, each reference, and ours ÷ reference.
const S = results.servers
const names = ["ours (workerd)", "node (memory)", "node (file)"]
const rows = [
  ["appends/s, 16 writers on 16 streams", (r) => r.appends_16x16.ops_per_s, "higher"],
  ["  p50 ms", (r) => r.appends_16x16.p50_ms, "lower"],
  ["  p99 ms", (r) => r.appends_16x16.p99_ms, "lower"],
  ["appends/s, 16 writers on one stream", (r) => r.appends_hot.ops_per_s, "higher"],
  ["  p50 ms", (r) => r.appends_hot.p50_ms, "lower"],
  ["  p99 ms", (r) => r.appends_hot.p99_ms, "lower"],
  ["producer messages/s (batches of 10)", (r) => r.producers.messages_per_s, "higher"],
  [`catch-up MB/s, ${P.mb} MB cold`, (r) => r.catch_up.cold_mb_per_s, "higher"],
  [`catch-up MB/s, ${P.mb} MB warm`, (r) => r.catch_up.warm_mb_per_s, "higher"],
]
const fmt = (v) => (Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) : "n/a")
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : "n/a")
const table = [
  `| workload | ours | node memory | node file | ours ÷ memory | ours ÷ file | better |`,
  `| --- | --- | --- | --- | --- | --- | --- |`,
  ...rows.map(([label, get, better]) => {
    const [o, m, f] = names.map((n) => get(S[n]))
    return `| ${label} | ${fmt(o)} | ${fmt(m)} | ${fmt(f)} | ${ratio(o, m)} | ${ratio(o, f)} | ${better} |`
  }),
]
const b = results.baseline
const o = S["ours (workerd)"]
table.push(
  "",
  `| same runtime, do-nothing Durable Object | appends/s | ours as a share of it |`,
  `| --- | --- | --- |`,
  `| echo, 16 writers on 16 objects | ${fmt(b.echo_16x16.ops_per_s)} | ${((100 * o.appends_16x16.ops_per_s) / b.echo_16x16.ops_per_s).toFixed(0)} % |`,
  `| one SQLite insert, 16 writers on 16 objects | ${fmt(b.insert_16x16.ops_per_s)} | ${((100 * o.appends_16x16.ops_per_s) / b.insert_16x16.ops_per_s).toFixed(0)} % |`,
  `| one SQLite insert, 16 writers on one object | ${fmt(b.insert_hot.ops_per_s)} | ${((100 * o.appends_hot.ops_per_s) / b.insert_hot.ops_per_s).toFixed(0)} % |`,
  "",
  `a request the Worker answers itself, 64 at a time, µs each: ours (CORS preflight) ${fmt(o.worker_only.us_per_request)}, do-nothing Worker ${fmt(b.worker_only.us_per_request)}`,
  "",
  `| same runtime, do-nothing Worker holding ${P.idle} idle SSE readers | KiB per reader | readers that got one event |`,
  `| --- | --- | --- |`,
  ...floorShapes.map(([m, label]) => `| ${label} | ${fmt(b[m].bytes_per_reader / 1024)} | ${b[m].woke} of ${b[m].readers} |`),
  "",
  `bundle: wasm ${(results.bundle.wasm_bytes / 1024).toFixed(0)} KiB raw, ${(results.bundle.wasm_gzip_bytes / 1024).toFixed(0)} KiB gzip; ` +
    `JS ${(results.bundle.js_bytes / 1024).toFixed(0)} KiB raw, ${(results.bundle.js_gzip_bytes / 1024).toFixed(0)} KiB gzip` +
    (results.bundle.first_request_ms !== undefined
      ? `; wrangler dev ready after ${(results.bundle.wrangler_ready_ms / 1000).toFixed(1)} s (build included), first request ${fmt(results.bundle.first_request_ms)} ms, second ${fmt(results.bundle.second_request_ms)} ms`
      : "")
)
const a = results.auth
table.push(
  "",
  `token check in the Worker, µs per request over an anonymous read of the same stream (HEAD, sequential; anonymous ${fmt(a.anonymous_us)} µs): ` +
    `HS256 ${fmt(a.hs256_us)}, EdDSA ${fmt(a.eddsa_us)}, ES256 ${fmt(a.es256_us)}`
)
const dropped = names.map((n) => `${n} ${S[n].transport_dropped}`).join(", ")
table.push("", `requests closed by the runtime without an answer (retried): ${dropped}`)
const L = results.live
const liveNames = ["ours (workerd)", "ours, readers in the object", "node (memory)", "node (file)"]
const liveRows = [
  [`${P.idle} idle SSE readers: KiB per reader (server process)`, (r) => r.idle_sse.bytes_per_reader / 1024],
  ["  readers' requests held in the object", (r) => r.idle_sse.held_requests],
  ["  readers that got the next appends exactly once", (r) => r.idle_sse.exactly_once],
  ["  every reader has them, ms", (r) => r.idle_sse.all_delivered_ms],
]
const yesNo = (v) => (v === true ? "yes" : v === false ? "no" : "n/a")
table.push(
  "",
  `| live readers | ${liveNames.join(" | ")} |`,
  `| --- | --- | --- | --- | --- |`,
  ...liveRows.map(([label, get]) => `| ${label} | ${liveNames.map((n) => fmt(get(L[n]))).join(" | ")} |`),
  `| ${P.idle} idle SSE readers: object evicted while idle | ${liveNames.map((n) => yesNo(L[n].idle_sse.evicted)).join(" | ")} |`
)
// Live fan-out: ours against the floor of the same runtime, and Node.
const LP = results.fanout
const pollNames = ["floor", "floor, durable", "ours (workerd)", "ours, readers in the object", "node (memory)", "node (file)"]
const pollRows = [
  [`${P.readers} long-poll readers, one append every ${P.interval} ms: delivery p50 ms`, (r) => r.long_poll.p50_ms],
  ["  p99 ms", (r) => r.long_poll.p99_ms],
  [`${P.readers} SSE readers, one append every ${P.interval} ms: delivery p50 ms`, (r) => r.sse.p50_ms],
  ["  p99 ms", (r) => r.sse.p99_ms],
  [`${P.wall} long-polls (distinct cursors): append ack p50 ms`, (r) => r.wall.ack_p50_ms],
  ["  append ack p99 ms", (r) => r.wall.ack_p99_ms],
  ["  every reader has it, p99 ms", (r) => r.wall.all_delivered_p99_ms],
]
table.push(
  "",
  "| live fan-out, each server fresh | do-nothing code, same runtime (long-polls held in an object; SSE through a bridge) | the same, one SQLite insert per append | ours (bridge) | ours, readers in the object | node (memory) | node (file) |",
  "| --- | --- | --- | --- | --- | --- | --- |",
  ...pollRows.map(([label, get]) => `| ${label} | ${pollNames.map((n) => fmt(get(LP[n]))).join(" | ")} |`)
)
console.log(`\n${results.date} — ${results.machine}${smoke ? " (smoke run)" : ""}\n`)
console.log(table.join("\n"))
results.table = table
if (out) writeFileSync(out, JSON.stringify(results, null, 2))
if (smoke) {
  const missing = [
    ...missingFigures(rows, names, S),
    ...missingFigures([["token check µs", (r) => r.hs256_us + r.eddsa_us + r.es256_us]], ["ours"], { ours: results.auth }),
    ...missingFigures(
      liveRows.filter(([label]) => !label.includes("held")),
      liveNames,
      L
    ),
    ...missingFigures(liveRows, liveNames.slice(0, 2), L),
    ...missingFigures([["worker-only µs", (r) => r.worker_only.us_per_request]], ["ours", "baseline"], { ours: S["ours (workerd)"], baseline: results.baseline }),
    ...missingFigures(pollRows, pollNames, LP),
    ...missingFigures(
      floorShapes.map(([m]) => [`floor ${m}`, (r) => (r[m].woke === r[m].readers ? r[m].bytes_per_reader : NaN)]),
      ["baseline"],
      { baseline: results.baseline }
    ),
  ]
  if (missing.length) {
    console.error(`bench smoke: missing figures: ${missing.join("; ")}`)
    process.exit(1)
  }
  console.log("bench smoke: every figure present")
}
