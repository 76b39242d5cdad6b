// The benchmark workloads: each takes a server ({ base, pid }) and bounded
// parameters, talks only to loopback, and returns plain numbers.
import { Pool } from "undici"
import { rss } from "./servers.mjs"
import { longPollReader, sseReader } from "../miniflare-tests/live-clients.mjs"

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN)
const uniq = (p) => `${p}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`

/** Requests workerd's HTTP server closed without an answer, retried (see README, Reliability). */
export const transport = { dropped: 0 }

async function call(pool, method, path, headers = {}, body) {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await pool.request({ method, path, headers, body })
      await r.body.dump()
      return r.statusCode
    } catch (e) {
      // A keep-alive connection the server closed before reading this
      // request: it never reached the server, so sending it again is safe.
      if (e?.code !== "UND_ERR_SOCKET" || attempt > 0) throw e
      transport.dropped++
    }
  }
}

async function create(pool, path, contentType = "application/octet-stream") {
  const s = await call(pool, "PUT", path, { "content-type": contentType })
  if (s !== 201 && s !== 200 && s !== 204) throw new Error(`create ${path}: ${s}`)
}

/**
 * `writers` concurrent writers for `durationMs`; writer i appends to
 * `pathFor(i)`. Returns appends/s and latency percentiles.
 */
export async function appends(srv, { writers, pathFor, durationMs, bodyBytes, setup = true }) {
  const pool = new Pool(srv.base, { connections: writers })
  const paths = Array.from({ length: writers }, (_, i) => pathFor(i))
  if (setup) for (const p of new Set(paths)) await create(pool, p)
  const body = Buffer.alloc(bodyBytes, 120)
  const lat = []
  const deadline = performance.now() + durationMs
  const t0 = performance.now()
  await Promise.all(
    paths.map(async (p) => {
      while (performance.now() < deadline) {
        const s = performance.now()
        const status = await call(pool, "POST", p, { "content-type": "application/octet-stream" }, body)
        if (status !== 204 && status !== 200) throw new Error(`append: ${status}`)
        lat.push(performance.now() - s)
      }
    })
  )
  const seconds = (performance.now() - t0) / 1000
  await pool.close()
  lat.sort((a, b) => a - b)
  return { ops_per_s: lat.length / seconds, p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), ops: lat.length }
}

/** `producers` idempotent producers on one JSON stream, batches of `batch` messages. */
export async function producerBatches(srv, { producers, batch, durationMs }) {
  const pool = new Pool(srv.base, { connections: producers })
  const path = `/v1/stream/${uniq("producers")}`
  await create(pool, path, "application/json")
  const body = JSON.stringify(Array.from({ length: batch }, (_, i) => ({ i, pad: "x".repeat(80) })))
  let requests = 0
  const deadline = performance.now() + durationMs
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: producers }, async (_, p) => {
      for (let seq = 0; performance.now() < deadline; seq++) {
        const headers = { "content-type": "application/json", "producer-id": `p${p}`, "producer-epoch": "0", "producer-seq": String(seq) }
        const s = await call(pool, "POST", path, headers, body)
        if (s !== 200) throw new Error(`producer append: ${s}`)
        requests++
      }
    })
  )
  const seconds = (performance.now() - t0) / 1000
  await pool.close()
  return { messages_per_s: (requests * batch) / seconds, requests }
}

/** Reads a stream from -1 to the tail, following Stream-Next-Offset. */
async function readThrough(pool, path) {
  let offset = "-1"
  let bytes = 0
  for (let i = 0; i < 100_000; i++) {
    const r = await pool.request({ method: "GET", path: `${path}?offset=${encodeURIComponent(offset)}` })
    const buf = await r.body.arrayBuffer()
    if (r.statusCode !== 200) throw new Error(`read: ${r.statusCode}`)
    bytes += buf.byteLength
    offset = r.headers["stream-next-offset"]
    if (r.headers["stream-up-to-date"] === "true") return bytes
  }
  throw new Error("read never reached the tail")
}

/** Catch-up of a `mb` MB stream of 1 KB messages, cold then warm: MB/s. */
export async function catchUp(srv, { mb }) {
  const pool = new Pool(srv.base, { connections: 16 })
  const path = `/v1/stream/${uniq("catchup")}`
  await create(pool, path)
  const msg = Buffer.alloc(1024, 97)
  const total = mb * 1024
  let next = 0
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < total) {
        next++
        const s = await call(pool, "POST", path, { "content-type": "application/octet-stream" }, msg)
        if (s !== 204) throw new Error(`append: ${s}`)
      }
    })
  )
  const timed = async () => {
    const t0 = performance.now()
    const bytes = await readThrough(pool, path)
    return { mb_per_s: bytes / 1e6 / ((performance.now() - t0) / 1000), bytes }
  }
  const cold = await timed()
  const warm = await timed()
  await pool.close()
  return { cold_mb_per_s: cold.mb_per_s, warm_mb_per_s: warm.mb_per_s, bytes: cold.bytes }
}

/** `readers` live readers (SSE or long-poll) of one stream, one append every `intervalMs`. */
export async function fanOut(srv, { kind, readers, messages, intervalMs }) {
  const url = `${srv.base}/v1/stream/${uniq(`fanout-${kind}`)}`
  await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  const sent = new Array(messages)
  const samples = []
  const onText = (t) => {
    const at = performance.now()
    for (const m of t.matchAll(/#(\d+);/g)) samples.push(at - sent[Number(m[1])])
  }
  const total = Array.from({ length: messages }, (_, i) => `#${i};`).join("").length
  const clients = Array.from({ length: readers }, () =>
    kind === "sse" ? sseReader(url, total, undefined, "now", onText) : longPollReader(url, total, undefined, "now", onText)
  )
  await sleep(1000) // let every reader connect and park
  const t0 = performance.now()
  for (let i = 0; i < messages; i++) {
    const wait = t0 + i * intervalMs - performance.now()
    if (wait > 0) await sleep(wait)
    sent[i] = performance.now()
    await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: `#${i};` })
  }
  await Promise.all(clients)
  samples.sort((a, b) => a - b)
  return { p50_ms: pct(samples, 50), p99_ms: pct(samples, 99), deliveries: samples.length }
}

/** Server memory per parked SSE reader (`parked` readers at the tail). */
export async function parkedMemory(srv, { parked }) {
  const url = `${srv.base}/v1/stream/${uniq("parked")}`
  await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" }, body: "x" })
  await (await fetch(`${url}?offset=-1`)).text()
  await sleep(500)
  const before = rss(srv.pid)
  const controller = new AbortController()
  let connected = 0
  const readers = Array.from({ length: parked }, () =>
    fetch(`${url}?offset=now&live=sse`, { signal: controller.signal })
      .then(async (r) => {
        connected++
        const reader = r.body.getReader()
        for (;;) if ((await reader.read()).done) break
      })
      .catch(() => null)
  )
  for (let i = 0; i < 600 && connected < parked; i++) await sleep(50)
  await sleep(1000)
  const after = rss(srv.pid)
  controller.abort()
  await Promise.all(readers)
  // RSS moves with the allocator's mood: a small fleet can even shrink it.
  // Below zero means "too small to see", reported as 0.
  const raw = (after - before) / parked
  return { bytes_per_reader: Math.max(0, raw), raw_bytes_per_reader: raw, parked: connected }
}
