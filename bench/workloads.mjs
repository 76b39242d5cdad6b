// The benchmark workloads: each takes a server ({ base, pid }) and bounded
// parameters, talks only to loopback, and returns plain numbers.
import { setMaxListeners } from "node:events"
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
export async function fanOut(srv, { kind, readers, messages, intervalMs, prefix = "/v1/stream/" }) {
  const url = `${srv.base}${prefix}${uniq(`fanout-${kind}`)}`
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

/**
 * `count` readers that GET `url` and read its body until `done(text so far)`
 * says so or the body ends; `connected()` counts those with a response.
 * `stop()` aborts them all and waits for them.
 */
function openReaders(url, count, done = () => false) {
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  let connected = 0
  const readers = Array.from({ length: count }, () =>
    fetch(url, { signal: controller.signal })
      .then(async (r) => {
        connected++
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader()
        let text = ""
        for (;;) {
          const { value, done: ended } = await reader.read()
          if (ended) return
          text += value
          if (done(text)) return
        }
      })
      .catch(() => null)
  )
  return {
    connected: () => connected,
    stop: async () => {
      controller.abort()
      await Promise.all(readers)
    },
  }
}

/** Object stats of a stream on our worker (test routes), or null elsewhere. */
async function objectStats(srv, name) {
  if (!srv.stats) return null
  const r = await fetch(`${srv.base}/__test/stream/${name}`)
  return r.status === 200 ? r.json() : null
}

/**
 * `readers` idle SSE readers at the tail of one stream: server memory per
 * reader (RSS delta of the server's process: Worker and object together),
 * the requests the object holds, whether it is evicted in `idleMs` of
 * quiet (our worker: its constructor ran again), and whether every reader
 * then gets the next two appends exactly once.
 */
export async function idleSse(srv, { readers, idleMs }) {
  const name = uniq("idle-sse")
  const url = `${srv.base}/v1/stream/${name}`
  const created = await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  // From the tail's offset, not `now`: a reader that connects after the
  // first append (a slow server or machine) still reads both exactly once.
  const tail = created.headers.get("stream-next-offset")
  await sleep(500)
  const before = rss(srv.pid)
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  const expected = "wake;done;"
  // Each reader's outcome as it ends, so one reader still waiting at the
  // timeout does not hide what the others got.
  const outcomes = new Array(readers).fill(null)
  const clients = Array.from({ length: readers }, (_, i) =>
    sseReader(url, expected.length, controller.signal, tail)
      .catch((e) => ({ text: "", error: String(e) }))
      .then((r) => (outcomes[i] = r))
  )
  // Every reader connected: sockets (the bridge) or held requests.
  let connected = srv.stats ? 0 : readers
  if (!srv.stats) await sleep(2000)
  for (let i = 0; i < 2400 && connected < readers; i++) {
    await sleep(50)
    const s = await objectStats(srv, name)
    connected = s.sockets + s.sseConnections
  }
  await sleep(500)
  const after = rss(srv.pid)
  const held = await objectStats(srv, name)
  await sleep(idleMs)
  const t0 = performance.now()
  await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "wake;" })
  await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "done;" })
  const timeout = sleep(60_000).then(() => "timeout")
  await Promise.race([Promise.all(clients), timeout])
  const delivered_ms = performance.now() - t0
  controller.abort()
  const woke = await objectStats(srv, name)
  return {
    readers,
    connected,
    bytes_per_reader: (after - before) / readers,
    held_requests: held ? held.readers : NaN,
    evicted: held && woke ? woke.constructed > held.constructed : null,
    exactly_once: outcomes.filter((r) => r?.text === expected).length,
    // Readers with an outcome: those still waiting at the timeout are not.
    ended: outcomes.filter(Boolean).length,
    all_delivered_ms: delivered_ms,
  }
}

/**
 * `readers` long-polls waiting at the tail of one stream with distinct
 * cursors; `appends` appends, one after another once every reader has the
 * last: each append's acknowledgement time, and the time until every
 * reader has it.
 */
export async function longPollWall(srv, { readers, appends, prefix = "/v1/stream/" }) {
  const name = uniq("lp-wall")
  const url = `${srv.base}${prefix}${name}`
  const created = await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  const start = created.headers.get("stream-next-offset")
  const got = new Array(appends).fill(0)
  const last = new Array(appends).fill(0)
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  let stop = false
  // undici's request API, not fetch: with 2,000 readers on 2 shared cores,
  // fetch's own cost per response made the load generator the bottleneck
  // for every server alike.
  const pool = new Pool(srv.base, { connections: readers })
  const path = new URL(url).pathname
  const clients = Array.from({ length: readers }, async (_, i) => {
    let offset = start
    while (!stop) {
      try {
        const r = await pool.request({ method: "GET", path: `${path}?offset=${encodeURIComponent(offset)}&live=long-poll&cursor=r${i}`, signal: controller.signal })
        const body = await r.body.text()
        if (r.statusCode === 200) {
          const at = performance.now()
          for (const m of body.matchAll(/#(\d+);/g)) {
            got[Number(m[1])]++
            last[Number(m[1])] = Math.max(last[Number(m[1])], at)
          }
        }
        offset = r.headers["stream-next-offset"] ?? offset
        if (r.statusCode >= 500) await sleep(50)
      } catch {
        if (!stop) await sleep(50)
      }
    }
  })
  let waiting = srv.stats ? 0 : readers
  if (!srv.stats) await sleep(2000)
  for (let i = 0; i < 2400 && waiting < readers; i++) {
    await sleep(50)
    const s = await objectStats(srv, name)
    waiting = s.sockets + s.parked
  }
  await sleep(300)
  const acks = []
  const walls = []
  for (let k = 0; k < appends; k++) {
    const t0 = performance.now()
    await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: `#${k};` })
    acks.push(performance.now() - t0)
    for (let w = 0; w < 2000 && got[k] < readers; w++) await sleep(5)
    walls.push(got[k] >= readers ? last[k] - t0 : NaN)
    // Let every reader ask again before the next append.
    await sleep(200)
  }
  stop = true
  controller.abort()
  await Promise.all(clients)
  await pool.destroy()
  acks.sort((a, b) => a - b)
  const done = walls.filter(Number.isFinite).sort((a, b) => a - b)
  return {
    readers,
    ack_p50_ms: pct(acks, 50),
    ack_p99_ms: pct(acks, 99),
    all_delivered_p99_ms: done.length === walls.length ? pct(done, 99) : NaN,
    complete: got.filter((g) => g === readers).length,
  }
}

/**
 * The runtime's floor for an idle SSE reader (the do-nothing Worker's
 * /hold-*\/ routes, see baseline-worker.mjs): RSS growth of the workerd
 * process per reader while `readers` wait, and how many then get one event.
 */
export async function heldFloor(srv, { readers, mode }) {
  const url = `${srv.base}/${mode}/${uniq(mode)}`
  await (await fetch(url, { method: "POST" })).arrayBuffer()
  await sleep(500)
  const before = rss(srv.pid)
  let woke = 0
  const open = openReaders(url, readers, (text) => {
    if (!text.includes("data: wake")) return false
    woke++
    return true
  })
  for (let i = 0; i < 1200 && open.connected() < readers; i++) await sleep(50)
  await sleep(1000)
  const after = rss(srv.pid)
  await (await fetch(url, { method: "POST" })).arrayBuffer()
  for (let i = 0; i < 600 && woke < open.connected(); i++) await sleep(50)
  const connected = open.connected()
  await open.stop()
  return { readers, connected, woke, bytes_per_reader: (after - before) / readers }
}

/**
 * A Worker's fixed cost per request: `requests` requests that the Worker
 * answers itself without a Durable Object (ours: a CORS preflight; the
 * do-nothing Worker: a POST of /hold-worker/), 64 at a time; µs per request.
 */
export async function workerOnly(srv, { requests, method, path }) {
  const pool = new Pool(srv.base, { connections: 64 })
  let sent = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (sent++ < requests) await call(pool, method, path)
    })
  )
  const us = ((performance.now() - t0) * 1000) / requests
  await pool.close()
  return { us_per_request: us }
}
