/**
 * Retention policies (an extension: Stream-Retention-Max-Age/-Bytes/-Messages on
 * PUT; PROTOCOL.md §4 and §5.6 reserve 410 for offsets before the earliest
 * retained one), on the shared worker: trimming on append and by the alarm,
 * rows freed, 410 with Stream-Earliest-Offset in catch-up, long-poll and SSE,
 * a live SSE reader keeping up never cut, and the official TypeScript client
 * surfacing the 410 so its user can resume from the earliest offset.
 */
import { DurableStream } from "@durable-streams/client"
import { describe, expect, inject, test } from "vitest"
import { readAll, stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const json = { "content-type": "application/json" }
const bytes = { "content-type": "application/octet-stream" }
const MIB = 1024 * 1024

async function create(name: string, headers: Record<string, string>) {
  const url = `${base}/v1/stream/${name}`
  const r = await fetch(url, { method: "PUT", headers })
  expect(r.status).toBe(201)
  return url
}

/** Reads an SSE response's text until `done(text)` or the connection ends. */
async function sseText(r: Response, done: (text: string) => boolean): Promise<{ text: string; ended: boolean }> {
  const reader = r.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  for (;;) {
    const { value, done: end } = await reader.read()
    if (end) return { text, ended: true }
    text += decoder.decode(value, { stream: true })
    if (done(text)) {
      await reader.cancel()
      return { text, ended: false }
    }
  }
}

describe("retention", () => {
  test("Max-Messages: 100 after 1,000 appends keeps the last 100 and frees the rest", { timeout: 60_000 }, async () => {
    const url = await create(uniq("ret-msgs"), { ...json, "stream-retention-max-messages": "100" })
    const offsets: string[] = []
    for (let i = 0; i < 1000; i++) {
      const r = await fetch(url, { method: "POST", headers: json, body: JSON.stringify({ n: i }) })
      expect(r.status).toBe(204)
      offsets.push(r.headers.get("stream-next-offset")!)
    }
    const { body } = await readAll(url)
    const kept = JSON.parse(new TextDecoder().decode(body))
    expect(kept.length).toBe(100)
    expect(kept[0].n).toBe(900)
    expect(kept[99].n).toBe(999)
    const head = await fetch(url, { method: "HEAD" })
    expect(head.headers.get("stream-earliest-offset")).toBe(offsets[899])
    expect(head.headers.get("stream-next-offset"), "offsets are stable").toBe(offsets[999])
    expect(head.headers.get("stream-retention-max-messages")).toBe("100")
    expect((await stats(base, url.split("/").pop()!)).chunkRows).toBe(100)
  })

  test("Max-Age: 2 drops old messages by the alarm, with no request", { timeout: 30_000 }, async () => {
    const name = uniq("ret-age")
    const url = await create(name, { ...json, "stream-retention-max-age": "2" })
    const r = await fetch(url, { method: "POST", headers: json, body: "[1,2,3]" })
    const tail = r.headers.get("stream-next-offset")
    expect((await stats(base, name)).chunkRows, "one batch, one row").toBe(1)
    expect((await stats(base, name)).alarm).not.toBeNull()
    // Only the test route is asked (it trims nothing): the alarm does it.
    await until(async () => (await stats(base, name)).chunkRows === 0, 10_000)
    const head = await fetch(url, { method: "HEAD" })
    expect(head.headers.get("stream-earliest-offset")).toBe(tail)
    const read = await fetch(`${url}?offset=-1`)
    expect(await read.json()).toEqual([])
  })

  test("Max-Bytes with 1 MiB appends spanning several rows drops whole appends", { timeout: 30_000 }, async () => {
    const name = uniq("ret-bytes")
    const url = await create(name, { ...bytes, "stream-retention-max-bytes": String(3 * MIB) })
    for (let i = 0; i < 6; i++) {
      const body = new Uint8Array(MIB + 1000).fill(i)
      expect((await fetch(url, { method: "POST", headers: bytes, body })).status).toBe(204)
    }
    const { body } = await readAll(url)
    expect(body.length, "two whole appends fit under 3 MiB").toBe(2 * (MIB + 1000))
    expect(body[0]).toBe(4)
    expect(body[body.length - 1]).toBe(5)
    expect((await stats(base, name)).chunkRows, "each append spans 2 rows").toBe(4)
  })

  test("410 with Stream-Earliest-Offset in catch-up, long-poll and SSE; -1 starts at the earliest", async () => {
    const url = await create(uniq("ret-410"), { ...json, "stream-retention-max-messages": "2" })
    const start = "0000000000000000_0000000000000000"
    for (const n of [1, 2, 3]) await fetch(url, { method: "POST", headers: json, body: String(n) })
    const earliest = (await fetch(url, { method: "HEAD" })).headers.get("stream-earliest-offset")!
    for (const live of ["", "&live=long-poll", "&live=sse"]) {
      const r = await fetch(`${url}?offset=${start}${live}`)
      expect(r.status, live).toBe(410)
      expect(r.headers.get("stream-earliest-offset")).toBe(earliest)
      expect((await r.json()).error.code).toBe("OFFSET_TRIMMED")
    }
    const from = await fetch(`${url}?offset=-1`)
    expect(await from.json()).toEqual([2, 3])
    expect((await fetch(`${url}?offset=${earliest}`)).status).toBe(200)
  })

  test("a live SSE reader the trim passes gets a control event saying so, then the end", { timeout: 20_000 }, async () => {
    const url = await create(uniq("ret-sse-behind"), { ...json, "stream-retention-max-messages": "1" })
    const tail = (await fetch(url, { method: "POST", headers: json, body: "1" })).headers.get("stream-next-offset")!
    const r = await fetch(`${url}?offset=${tail}&live=sse`)
    expect(r.status).toBe(200)
    let seen = ""
    const reading = sseText(r, (t) => {
      seen = t
      return t.includes("OFFSET_TRIMMED")
    })
    // Once the reader waits at the tail, one append of two messages trims
    // past its position at once.
    await until(async () => seen.includes("event: control"))
    await fetch(url, { method: "POST", headers: json, body: "[2,3]" })
    const { text } = await reading
    expect(text).toContain(`"streamNextOffset":"${tail}"`)
    expect(text).toMatch(/"streamEarliestOffset":"\d{16}_\d{16}"/)
    expect(text).not.toContain("data:[2")
  })

  test("a live SSE reader keeping up is never cut", { timeout: 20_000 }, async () => {
    const url = await create(uniq("ret-sse-up"), { ...json, "stream-retention-max-messages": "2" })
    const r = await fetch(`${url}?offset=-1&live=sse`)
    let seen = ""
    const reading = sseText(r, (t) => {
      seen = t
      return t.includes("20]") || t.includes("OFFSET_TRIMMED")
    })
    for (let i = 1; i <= 20; i++) {
      await fetch(url, { method: "POST", headers: json, body: `[${i}]` })
      // The reader has this message before the next append trims.
      await until(async () => seen.includes(`[${i}]`) || seen.includes("OFFSET_TRIMMED"))
    }
    const { text } = await reading
    expect(text).not.toContain("OFFSET_TRIMMED")
    const got = [...text.matchAll(/^data:(\[.*\])$/gm)].flatMap((m) => JSON.parse(m[1]))
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })

  test("a fork's reads below its source's trim point answer 410 with an offset the fork can read", async () => {
    const source = uniq("ret-src")
    const src = await create(source, { ...json, "stream-retention-max-messages": "3" })
    for (const n of [1, 2]) await fetch(src, { method: "POST", headers: json, body: String(n) })
    const fork = `${base}/v1/stream/${uniq("ret-fork")}`
    const made = await fetch(fork, { method: "PUT", headers: { ...json, "stream-forked-from": `/v1/stream/${source}` } })
    expect(made.status).toBe(201)
    expect(await (await fetch(`${fork}?offset=-1`)).json(), "inherited, before the trim").toEqual([1, 2])
    for (const n of [3, 4, 5]) await fetch(src, { method: "POST", headers: json, body: String(n) })
    await fetch(fork, { method: "POST", headers: json, body: "\"own\"" })
    const gone = await fetch(`${fork}?offset=-1`)
    expect(gone.status).toBe(410)
    const earliest = gone.headers.get("stream-earliest-offset")!
    const rest = await fetch(`${fork}?offset=${earliest}`)
    expect(rest.status).toBe(200)
    expect(await rest.json(), "the fork's own data is intact").toEqual(["own"])
  })

  test("the official TypeScript client surfaces the 410, and resuming from the earliest offset works", async () => {
    const url = await create(uniq("ret-client"), { ...json, "stream-retention-max-messages": "1" })
    const handle = new DurableStream({ url, contentType: "application/json" })
    await handle.append(JSON.stringify({ a: 1 }))
    await handle.append(JSON.stringify({ a: 2 }))
    let status = 0
    let earliest = ""
    try {
      await (await handle.stream({ offset: "0000000000000000_0000000000000000", live: false })).json()
    } catch (e: any) {
      status = e.status
      earliest = e.headers?.["stream-earliest-offset"] ?? ""
    }
    expect(status).toBe(410)
    expect(earliest).toMatch(/^\d{16}_\d{16}$/)
    const items = await (await handle.stream({ offset: earliest, live: false })).json()
    expect(items).toEqual([{ a: 2 }])
  })

  test("one trim step of a 100 MiB backlog (alarm budget), timed", { timeout: 120_000 }, async () => {
    const name = uniq("ret-100mib")
    const url = await create(name, { ...bytes, "stream-retention-max-age": "3600" })
    const body = new Uint8Array(MIB).fill(7)
    for (let i = 0; i < 100; i++) {
      expect((await fetch(url, { method: "POST", headers: bytes, body })).status).toBe(204)
    }
    expect((await stats(base, name)).chunkRows).toBe(100)
    const t0 = performance.now()
    const step = await (await fetch(`${base}/__test/stream/${name}?alarm-ahead=3601000`, { method: "POST" })).json()
    const ms = performance.now() - t0
    expect(step.rowsBefore).toBe(100)
    expect(step.rowsAfter).toBe(0)
    console.log(`retention: one trim step dropped 100 MiB in 100 rows (100 units) in ${ms.toFixed(1)} ms (request round trip)`)
    const head = await fetch(url, { method: "HEAD" })
    expect(head.headers.get("stream-earliest-offset")).toBe(head.headers.get("stream-next-offset"))
  })

  test("malformed and over-the-ceiling policies are refused with a reason; re-PUTs compare them", async () => {
    const name = uniq("ret-bad")
    const url = `${base}/v1/stream/${name}`
    for (const [k, v] of [
      ["stream-retention-max-age", "0"],
      ["stream-retention-max-bytes", "ten"],
      ["stream-retention-max-messages", "-1"],
      ["stream-retention-max-bytes", String(16 * 1024 * MIB)],
    ]) {
      const r = await fetch(url, { method: "PUT", headers: { ...json, [k]: v } })
      expect(r.status, `${k}: ${v}`).toBe(400)
      expect((await r.json()).error.code).toBe("INVALID_RETENTION")
    }
    const policy = { ...json, "stream-retention-max-messages": "5" }
    expect((await fetch(url, { method: "PUT", headers: policy })).status).toBe(201)
    expect((await fetch(url, { method: "PUT", headers: policy })).status).toBe(200)
    const other = { ...json, "stream-retention-max-messages": "6" }
    expect((await fetch(url, { method: "PUT", headers: other })).status).toBe(409)
  })
})
