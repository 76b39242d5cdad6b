/**
 * Edge caching in the Worker (PROTOCOL.md §10, src/cloudflare/edge_cache.rs):
 * chunks that end before the tail come from caches.default without reaching
 * the object, for a bounded time (a deleted stream's chunks leave the cache),
 * identical concurrent long-polls collapse into one request, and nothing
 * stale is served where the protocol promises fresh data.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import type { Miniflare } from "miniflare"
import { start } from "./mf.mjs"
import { stats, uniq, until } from "./helpers"

let mf: Miniflare
let base = ""
beforeAll(async () => {
  // Small pages, so short streams have chunks that end before the tail; a
  // long-poll that outlasts the test's appends.
  // Cached chunks live 5 s (+1 s stale), so a deleted stream's chunks leave soon.
  ;({ mf, base } = await start({
    vars: { MAX_READ_CHUNK_BYTES: "16", LONG_POLL_TIMEOUT_MS: "5000", CACHE_MAX_AGE_S: "5", CACHE_SWR_S: "1" },
  }))
})
afterAll(async () => {
  await mf.dispose()
})

const text = { "content-type": "text/plain" }

/** A stream of `n` 8-byte appends; returns its URL, name and the offsets after each append. */
async function stream(n: number): Promise<{ url: string; name: string; offsets: Array<string> }> {
  const name = uniq("cache")
  const url = `${base}/v1/stream/${name}`
  const put = await fetch(url, { method: "PUT", headers: text })
  const offsets = [put.headers.get("stream-next-offset")!]
  for (let i = 0; i < n; i++) {
    const r = await fetch(url, { method: "POST", headers: text, body: `${String(i).padStart(7, "-")};` })
    offsets.push(r.headers.get("stream-next-offset")!)
  }
  return { url, name, offsets }
}

describe("edge cache", () => {
  test("a mid-stream chunk is cached: the second read is a HIT that never reaches the object", async () => {
    const { url, name, offsets } = await stream(6)
    const first = await fetch(`${url}?offset=${offsets[1]}`)
    expect(first.headers.get("x-cache")).toBe("MISS")
    expect(first.headers.get("cache-control")).toBe("public, max-age=5, stale-while-revalidate=1")
    const body = await first.text()
    expect(body).toBe("------1;------2;")
    let hit: Response | undefined
    await until(async () => {
      const before = (await stats(base, name)).requests
      const r = await fetch(`${url}?offset=${offsets[1]}`)
      if (r.headers.get("x-cache") !== "HIT") return false
      expect(await r.text()).toBe(body)
      expect((await stats(base, name)).requests, "the HIT did not reach the object").toBe(before)
      hit = r
      return true
    })
    // If-None-Match is answered from the cache too.
    const nm = await fetch(`${url}?offset=${offsets[1]}`, { headers: { "if-none-match": hit!.headers.get("etag")! } })
    expect(nm.status).toBe(304)
    expect(nm.headers.get("x-cache")).toBe("HIT")
  })

  test("100 concurrent long-polls at one offset and cursor cost the object at most 2 requests", { timeout: 30_000 }, async () => {
    const { url, name, offsets } = await stream(1)
    const tail = offsets[1]!
    const cursor = "12345"
    const before = (await stats(base, name)).requests
    const polls = Array.from({ length: 100 }, () =>
      fetch(`${url}?offset=${tail}&live=long-poll&cursor=${cursor}`).then(async (r) => ({ status: r.status, body: await r.text(), x: r.headers.get("x-cache") }))
    )
    await until(async () => (await stats(base, name)).sockets >= 1)
    await fetch(url, { method: "POST", headers: text, body: "wake-up;" })
    const results = await Promise.all(polls)
    for (const r of results) {
      expect(r.status).toBe(200)
      expect(r.body).toBe("wake-up;")
    }
    const after = (await stats(base, name)).requests
    // `after - before` counts the long-polls that reached the object, plus the append.
    expect(after - before - 1).toBeLessThanOrEqual(2)
    console.log(`collapse: 100 long-polls -> ${after - before - 1} request(s) to the object`)
    // A late long-poll with the same offset and cursor, within the cursor
    // interval, gets the same answer without reaching the object.
    const late = await fetch(`${url}?offset=${tail}&live=long-poll&cursor=${cursor}`)
    expect(late.status).toBe(200)
    expect(late.headers.get("x-cache")).toBe("HIT")
    expect(await late.text()).toBe("wake-up;")
    expect((await stats(base, name)).requests).toBe(after)
  })

  test("long-polls with distinct cursors at one offset share one socket; each gets a cursor past its own, for data and for the timeout", { timeout: 30_000 }, async () => {
    const { url, name, offsets } = await stream(1)
    const tail = offsets[1]!
    // Cursors of the current interval or later, all distinct.
    const first = await fetch(`${url}?offset=${tail}&live=long-poll`)
    await first.arrayBuffer()
    const current = Number(first.headers.get("stream-cursor"))
    const poll = (c: number) =>
      fetch(`${url}?offset=${tail}&live=long-poll&cursor=${c}`).then(async (r) => ({
        status: r.status,
        body: await r.text(),
        cursor: Number(r.headers.get("stream-cursor")),
        sent: c,
      }))
    // The timeout's 204 is shared too, each with its own cursor.
    const idle = await Promise.all(Array.from({ length: 50 }, (_, i) => poll(current + i)))
    for (const r of idle) {
      expect(r.status).toBe(204)
      expect(r.cursor).toBeGreaterThan(r.sent)
    }
    const polls = Array.from({ length: 50 }, (_, i) => poll(current + 100 + i))
    await until(async () => (await stats(base, name)).sockets === 1)
    const before = (await stats(base, name)).requests
    await fetch(url, { method: "POST", headers: text, body: "wake-up;" })
    for (const r of await Promise.all(polls)) {
      expect(r.status).toBe(200)
      expect(r.body).toBe("wake-up;")
      expect(r.cursor).toBeGreaterThan(r.sent)
    }
    // The append only: every long-poll was already waiting on the one socket.
    expect((await stats(base, name)).requests - before).toBe(1)
  })

  test("large long-poll answers are not kept in the isolate", async () => {
    const name = uniq("big-lp")
    const url = `${base}/v1/stream/${name}`
    const start = (await fetch(url, { method: "PUT", headers: text })).headers.get("stream-next-offset")!
    await fetch(url, { method: "POST", headers: text, body: "y".repeat(40 * 1024) })
    const poll = () => fetch(`${url}?offset=${start}&live=long-poll&cursor=7`)
    const first = await poll()
    expect(first.status).toBe(200)
    expect((await first.text()).length).toBe(40 * 1024)
    const before = (await stats(base, name)).requests
    const second = await poll()
    await second.text()
    expect(second.headers.get("x-cache")).toBe("MISS")
    expect((await stats(base, name)).requests).toBe(before + 1)
  })

  test("read-your-writes: a read reaching the tail is never served from the cache", async () => {
    const { url, offsets } = await stream(1)
    const from = offsets[0]!
    const a = await fetch(`${url}?offset=${from}`)
    expect(a.headers.get("stream-up-to-date")).toBe("true")
    expect(a.headers.get("cache-control")).toBe("no-cache")
    await fetch(url, { method: "POST", headers: text, body: "appended" })
    let got = ""
    let offset = from
    for (let i = 0; i < 10; i++) {
      const r = await fetch(`${url}?offset=${offset}`)
      expect(r.headers.get("x-cache")).not.toBe("HIT")
      got += await r.text()
      offset = r.headers.get("stream-next-offset")!
      if (r.headers.get("stream-up-to-date")) break
    }
    expect(got).toBe("------0;appended")
  })

  test("a chunk cached before a close never claims Stream-Closed; the final offset still tells", async () => {
    const { url, offsets } = await stream(4)
    const mid = offsets[1]!
    const first = await fetch(`${url}?offset=${mid}`)
    const next = first.headers.get("stream-next-offset")!
    await first.text()
    await until(async () => (await fetch(`${url}?offset=${mid}`)).headers.get("x-cache") === "HIT")
    await fetch(url, { method: "POST", headers: { ...text, "stream-closed": "true" } })
    const cached = await fetch(`${url}?offset=${mid}`)
    expect(cached.headers.get("x-cache")).toBe("HIT")
    expect(cached.headers.get("stream-closed")).toBeNull()
    expect(cached.headers.get("stream-next-offset")).toBe(next)
    const last = await fetch(`${url}?offset=${next}`)
    const lastBody = await last.text()
    const eof = await fetch(`${url}?offset=${last.headers.get("stream-next-offset")}`)
    expect(lastBody).toBe("------3;")
    expect(eof.headers.get("stream-closed")).toBe("true")
    expect(eof.headers.get("x-cache")).not.toBe("HIT")
  })

  test("a deleted stream's cached chunks stop being served once their max-age passes", { timeout: 30_000 }, async () => {
    const { url, offsets } = await stream(4)
    const chunk = `${url}?offset=${offsets[1]}`
    await (await fetch(chunk)).text()
    await until(async () => (await fetch(chunk)).headers.get("x-cache") === "HIT")
    expect((await fetch(url, { method: "DELETE" })).status).toBe(204)
    // max-age 5 s + stale-while-revalidate 1 s: then the origin answers, and it is gone.
    const deleted = Date.now()
    await until(async () => (await fetch(chunk)).status === 404, 15_000)
    expect(Date.now() - deleted).toBeLessThan(12_000)
  })

  test("a stream read only through cache hits does not expire under its readers (sliding TTL)", { timeout: 30_000 }, async () => {
    const name = uniq("ttl-cached")
    const url = `${base}/v1/stream/${name}`
    const put = await fetch(url, { method: "PUT", headers: { ...text, "stream-ttl": "4" } })
    const offsets = [put.headers.get("stream-next-offset")!]
    for (let i = 0; i < 4; i++) {
      const r = await fetch(url, { method: "POST", headers: text, body: `${String(i).padStart(7, "-")};` })
      offsets.push(r.headers.get("stream-next-offset")!)
    }
    const chunk = `${url}?offset=${offsets[1]}`
    const first = await fetch(chunk)
    // A cached copy lives at most half the TTL, so readers come back to the origin in time.
    expect(first.headers.get("cache-control")).toBe("public, max-age=2")
    await first.text()
    let hits = 0
    const until8s = Date.now() + 8000
    while (Date.now() < until8s) {
      const r = await fetch(chunk)
      expect(r.status).toBe(200)
      if (r.headers.get("x-cache") === "HIT") hits++
      await r.text()
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(hits).toBeGreaterThan(10)
    // Twice the TTL later, read almost only through the cache: still there.
    expect((await fetch(url, { method: "HEAD" })).status).toBe(200)
  })

  test("a shared read that hangs (its leader gone) does not hold the readers that come later", { timeout: 40_000 }, async () => {
    const { url, name, offsets } = await stream(4)
    const chunk = `${url}?offset=${offsets[1]}&x=hang`
    // The object computes the leader's answer, then sits on it for 25 s.
    await fetch(`${base}/__test/stream/${name}?fault=slow-read&ms=25000`, { method: "POST" })
    const leader = new AbortController()
    const led = fetch(chunk, { signal: leader.signal }).catch((e) => e)
    await new Promise((r) => setTimeout(r, 200))
    leader.abort()
    await led
    // A reader of the same chunk joins the hung read, gives up at its deadline
    // (5 s) and asks the object itself.
    const t0 = Date.now()
    const later = await fetch(chunk)
    expect(later.status).toBe(200)
    expect(await later.text()).toBe("------1;------2;")
    expect(Date.now() - t0).toBeLessThan(15_000)
  })

  test("read-your-writes under collapsing: a read that joins one answered before its append is not served from it", { timeout: 30_000 }, async () => {
    const { url, name, offsets } = await stream(1)
    const tail = offsets[1]!
    // A reader at the tail whose answer (nothing new) is computed now and sent 2 s later.
    await fetch(`${base}/__test/stream/${name}?fault=slow-read&ms=2000`, { method: "POST" })
    const early = fetch(`${url}?offset=${tail}`).then(async (r) => ({ body: await r.text(), upToDate: r.headers.get("stream-up-to-date") }))
    await new Promise((r) => setTimeout(r, 300))
    // Meanwhile a writer appends, is acknowledged, and reads from the same offset.
    expect((await fetch(url, { method: "POST", headers: text, body: "mine;" })).status).toBe(204)
    const own = await fetch(`${url}?offset=${tail}`)
    expect(await own.text(), "the writer sees its own append").toBe("mine;")
    expect((await early).body, "the early reader got the answer of its time").toBe("")
  })

  test("every response says what the cache did", async () => {
    const { url, offsets } = await stream(1)
    const xs = async (r: Promise<Response>) => (await r).headers.get("x-cache")
    expect(await xs(fetch(url, { method: "HEAD" }))).toBe("BYPASS")
    expect(await xs(fetch(url, { method: "POST", headers: text, body: "x" }))).toBe("BYPASS")
    expect(await xs(fetch(`${url}?offset=-1`))).toBe("BYPASS")
    expect(await xs(fetch(`${url}?offset=now`))).toBe("BYPASS")
    expect(await xs(fetch(`${base}/nowhere`))).toBe("BYPASS")
    expect(await xs(fetch(`${url}?offset=${offsets[0]}`))).toMatch(/^(MISS|HIT)$/)
    const sse = new AbortController()
    const s = await fetch(`${url}?offset=now&live=sse`, { signal: sse.signal })
    expect(s.headers.get("x-cache")).toBe("BYPASS")
    sse.abort()
  })
})
