/**
 * Bounded fan-in and bounded state, on a worker with small limits: live readers
 * per stream (MAX_READERS_PER_STREAM), idle producer state (PRODUCER_TTL_S,
 * PROTOCOL.md §5.2.1 "Producer State Cleanup"), appends in flight per isolate
 * (MAX_INFLIGHT_APPEND_BYTES), and fork chain depth.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import type { Miniflare } from "miniflare"
import { start } from "./mf.mjs"
import { stats, uniq, until } from "./helpers"

let mf: Miniflare
let base = ""
beforeAll(async () => {
  ;({ mf, base } = await start({
    vars: { MAX_READERS_PER_STREAM: "3", PRODUCER_TTL_S: "1", MAX_INFLIGHT_APPEND_BYTES: "1048576", MAX_APPEND_BYTES: "1048576" },
  }))
})
afterAll(async () => {
  await mf.dispose()
})

const text = { "content-type": "text/plain" }

describe("limits", () => {
  test("a stream holds at most MAX_READERS_PER_STREAM live readers; beyond it 503 with Retry-After", { timeout: 20_000 }, async () => {
    const name = uniq("readers")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: text })
    const aborts = Array.from({ length: 3 }, () => new AbortController())
    for (const a of aborts) expect((await fetch(`${url}?offset=now&live=sse`, { signal: a.signal })).status).toBe(200)
    await until(async () => (await stats(base, name)).sockets === 3)
    const refused = await fetch(`${url}?offset=now&live=sse`)
    expect(refused.status).toBe(503)
    expect(refused.headers.get("retry-after")).toBe("5")
    expect((await refused.json()).error.code).toBe("TOO_MANY_READERS")
    // Catch-up reads are not live readers.
    expect((await fetch(`${url}?offset=-1`)).status).toBe(200)
    // A reader that leaves frees its place.
    aborts[0]!.abort()
    await until(async () => (await stats(base, name)).sockets < 3)
    const again = new AbortController()
    const r = await fetch(`${url}?offset=now&live=sse`, { signal: again.signal })
    expect(r.status).toBe(200)
    again.abort()
    for (const a of aborts) a.abort()
  })

  test("an idle producer's state is pruned after PRODUCER_TTL_S, and it starts over as new", { timeout: 20_000 }, async () => {
    const name = uniq("prune")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: text })
    const produce = (seq: number) =>
      fetch(url, { method: "POST", headers: { ...text, "producer-id": "idle", "producer-epoch": "0", "producer-seq": String(seq) }, body: `s${seq};` })
    expect((await produce(0)).status).toBe(200)
    expect((await produce(1)).status).toBe(200)
    expect((await stats(base, name)).producerRows).toBe(1)
    // After the TTL the next write prunes it (at most once per TTL), and the
    // producer's old sequence is gone: seq 0 is accepted again.
    await new Promise((r) => setTimeout(r, 1100))
    expect((await fetch(url, { method: "POST", headers: text, body: "plain;" })).status).toBe(204)
    expect((await stats(base, name)).producerRows).toBe(0)
    expect((await produce(0)).status).toBe(200)
    expect(await (await fetch(`${url}?offset=-1`)).text()).toBe("s0;s1;plain;s0;")
  })

  test("appends beyond the isolate's in-flight budget get 503 APPENDS_BUSY and store nothing", { timeout: 30_000 }, async () => {
    const name = uniq("busy")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" } })
    const body = new Uint8Array(700 * 1024).fill(1)
    const statuses = await Promise.all(
      Array.from({ length: 6 }, () => fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body }).then(async (r) => {
        if (r.status === 503) {
          expect(r.headers.get("retry-after")).toBe("1")
          expect((await r.json()).error.code).toBe("APPENDS_BUSY")
        } else await r.arrayBuffer()
        return r.status
      }))
    )
    const stored = statuses.filter((s) => s === 204).length
    expect(stored).toBeGreaterThan(0)
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0)
    const head = await fetch(url, { method: "HEAD" })
    expect(Number(head.headers.get("stream-next-offset")!.split("_")[1])).toBe(stored * body.length)
    await until(async () => (await stats(base, name)).appendBytesReserved === 0)
  })

  test("a fork chain deeper than 16 is refused with a reason", { timeout: 30_000 }, async () => {
    const names = Array.from({ length: 18 }, () => uniq("depth"))
    await fetch(`${base}/v1/stream/${names[0]}`, { method: "PUT", headers: text, body: "root" })
    for (let i = 1; i <= 16; i++) {
      const r = await fetch(`${base}/v1/stream/${names[i]}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${names[i - 1]}` } })
      expect(r.status, `depth ${i}`).toBe(201)
    }
    expect(await (await fetch(`${base}/v1/stream/${names[16]}?offset=-1`)).text()).toBe("root")
    const deep = await fetch(`${base}/v1/stream/${names[17]}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${names[16]}` } })
    expect(deep.status).toBe(400)
    expect((await deep.json()).error.code).toBe("FORK_TOO_DEEP")
    expect((await stats(base, names[16]!)).refs).toBe(0)
  })
})
