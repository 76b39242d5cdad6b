// Live-reader benchmarks under local workerd (Miniflare, bare workerd, no
// wrangler in the path; ../shared/PERFORMANCE.md explains why):
//   1. append-to-delivery latency: N SSE readers, then N long-poll readers,
//      on one stream, one append every INTERVAL ms; p50/p99 over every
//      (reader, message) pair;
//   2. memory per parked reader: workerd's resident memory before and after
//      parking PARKED SSE readers (then long-polls) at the tail.
// Loopback only, bounded in count and time. Prints a table and writes JSON.
//
//   node bench/live.mjs [--readers 100] [--messages 100] [--interval 50] [--parked 1000] [--out FILE]
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { start } from "../miniflare-tests/mf.mjs"
import { longPollReader, sseReader } from "../miniflare-tests/live-clients.mjs"

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), [])
)
const READERS = Number(args.readers ?? 100)
const MESSAGES = Number(args.messages ?? 100)
const INTERVAL = Number(args.interval ?? 50)
const PARKED = Number(args.parked ?? 1000)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

async function stats(base, name) {
  return (await fetch(`${base}/__test/stream/${name}`)).json()
}

async function until(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(50)
  }
  throw new Error("timed out")
}

/** Resident memory of the workerd process Miniflare started, in bytes. */
function workerdRss() {
  const out = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" })
  const pids = out
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([, ppid, comm]) => Number(ppid) === process.pid && comm === "workerd")
    .map(([pid]) => pid)
  let total = 0
  for (const pid of pids) {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/)
    total += Number(m[1]) * 1024
  }
  return total
}

async function latency(base, kind) {
  const name = `bench-${kind}-${Date.now()}`
  const url = `${base}/v1/stream/${name}`
  await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  const sent = new Array(MESSAGES)
  const samples = []
  const onText = (t) => {
    const at = performance.now()
    for (const m of t.matchAll(/#(\d+);/g)) samples.push(at - sent[Number(m[1])])
  }
  const total = Array.from({ length: MESSAGES }, (_, i) => `#${i};`).join("").length
  const readers = Array.from({ length: READERS }, () =>
    kind === "sse" ? sseReader(url, total, undefined, "now", onText) : longPollReader(url, total, undefined, "now", onText)
  )
  await until(async () => {
    const s = await stats(base, name)
    return kind === "sse" ? s.sseConnections === READERS && s.parked === READERS : s.parked === READERS
  }, 30_000)
  const t0 = performance.now()
  for (let i = 0; i < MESSAGES; i++) {
    const next = t0 + i * INTERVAL
    const wait = next - performance.now()
    if (wait > 0) await sleep(wait)
    sent[i] = performance.now()
    await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: `#${i};` })
  }
  await Promise.all(readers)
  samples.sort((a, b) => a - b)
  return { kind, readers: READERS, messages: MESSAGES, samples: samples.length, p50_ms: pct(samples, 50), p99_ms: pct(samples, 99) }
}

async function memory(base, kind) {
  const name = `bench-mem-${kind}-${Date.now()}`
  const url = `${base}/v1/stream/${name}`
  await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" }, body: "x" })
  // Warm the object and the connection paths first.
  await fetch(`${url}?offset=-1`)
  await sleep(500)
  const before = workerdRss()
  const controller = new AbortController()
  const readers = Array.from({ length: PARKED }, () =>
    (kind === "sse" ? sseReader(url, 1e12, controller.signal, "now") : longPollReader(url, 1e12, controller.signal)).catch(() => null)
  )
  await until(async () => {
    const s = await stats(base, name)
    return kind === "sse" ? s.sseConnections === PARKED : s.parked === PARKED
  }, 60_000)
  await sleep(1000)
  const after = workerdRss()
  controller.abort()
  await Promise.all(readers)
  return { kind, parked: PARKED, rss_before_mib: before / 2 ** 20, rss_after_mib: after / 2 ** 20, bytes_per_reader: (after - before) / PARKED }
}

const { mf, base } = await start({ testVars: false })
try {
  const results = { date: new Date().toISOString(), latency: [], memory: [] }
  for (const kind of ["sse", "long-poll"]) results.latency.push(await latency(base, kind))
  for (const kind of ["sse", "long-poll"]) results.memory.push(await memory(base, kind))
  console.log(`append-to-delivery, ${READERS} readers, ${MESSAGES} appends every ${INTERVAL} ms`)
  for (const r of results.latency) console.log(`  ${r.kind.padEnd(9)} p50 ${r.p50_ms.toFixed(1)} ms  p99 ${r.p99_ms.toFixed(1)} ms  (${r.samples} deliveries)`)
  console.log(`memory per parked reader (${PARKED} parked, workerd RSS delta)`)
  for (const r of results.memory)
    console.log(`  ${r.kind.padEnd(9)} ${(r.bytes_per_reader / 1024).toFixed(1)} KiB  (RSS ${r.rss_before_mib.toFixed(0)} -> ${r.rss_after_mib.toFixed(0)} MiB)`)
  if (args.out) writeFileSync(args.out, JSON.stringify(results, null, 2))
} finally {
  await mf.dispose()
}
