/**
 * WebSocket readers (`live=ws`, an extension, README Live reads): JSON frames
 * per batch for JSON, text and binary streams, resume by offset, the close;
 * fan-out to many sockets at one position; a client that leaves releases its
 * socket; and hibernation: the object, holding only sockets, is evicted while
 * idle and its readers still get the next append exactly once.
 */
import { describe, expect, inject, test } from "vitest"
import { WebSocket } from "undici"
import { stats, uniq, until } from "./helpers"

const base = inject("baseUrl")

interface Frame {
  data: unknown
  nextOffset: string
  upToDate: boolean
  closed: boolean
  encoding?: string
}

/** A reader: its frames as they arrive, and how the server closed it. */
function reader(url: string) {
  const frames: Array<Frame> = []
  let closeCode = 0
  const ws = new WebSocket(url.replace(/^http/, "ws"))
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve())
    ws.addEventListener("error", () => reject(new Error("websocket error")))
  })
  ws.addEventListener("message", (e) => frames.push(JSON.parse(String(e.data))))
  const closed = new Promise<number>((resolve) =>
    ws.addEventListener("close", (e) => {
      closeCode = e.code
      resolve(e.code)
    })
  )
  return { ws, frames, opened, closed, code: () => closeCode }
}

async function put(name: string, type: string, body?: BodyInit) {
  const r = await fetch(`${base}/v1/stream/${name}`, { method: "PUT", headers: { "content-type": type }, body })
  expect(r.status).toBe(201)
  return r.headers.get("stream-next-offset")!
}

const post = (name: string, type: string, body: BodyInit, extra: Record<string, string> = {}) =>
  fetch(`${base}/v1/stream/${name}`, { method: "POST", headers: { "content-type": type, ...extra }, body })

describe("WebSocket readers", () => {
  test("JSON, text and binary streams: one frame per batch in the stream's form; the close ends the socket", async () => {
    const json = uniq("ws-json")
    await put(json, "application/json", "[1,2]")
    const j = reader(`${base}/v1/stream/${json}?offset=-1&live=ws`)
    await j.opened
    await until(async () => j.frames.length === 1)
    expect(j.frames[0]!.data).toEqual([1, 2])
    expect(j.frames[0]!.upToDate).toBe(true)
    await post(json, "application/json", '[{"a":3}]', { "stream-closed": "true" })
    // The last frame says the stream closed; the server closes the socket
    // (local workerd completes that handshake late, workerd #2569, so the
    // client does not wait for it).
    await until(async () => j.frames.length === 2)
    expect(j.frames.at(-1)).toMatchObject({ data: [{ a: 3 }], closed: true, upToDate: true })
    j.ws.close()

    const text = uniq("ws-text")
    await put(text, "text/plain", "héllo ")
    const t = reader(`${base}/v1/stream/${text}?offset=-1&live=ws`)
    await until(async () => t.frames.length === 1)
    await post(text, "text/plain", "wörld")
    await until(async () => t.frames.length === 2)
    expect(t.frames.map((f) => f.data).join("")).toBe("héllo wörld")
    t.ws.close()

    const bin = uniq("ws-bin")
    await put(bin, "application/octet-stream", new Uint8Array([0, 1, 255]))
    const b = reader(`${base}/v1/stream/${bin}?offset=-1&live=ws`)
    await until(async () => b.frames.length === 1)
    expect(b.frames[0]).toMatchObject({ data: "AAH/", encoding: "base64" })
    b.ws.close()
  })

  test("resume by offset: a reader reconnecting with its last nextOffset misses nothing and repeats nothing", async () => {
    const name = uniq("ws-resume")
    await put(name, "text/plain", "a;")
    const first = reader(`${base}/v1/stream/${name}?offset=-1&live=ws`)
    await until(async () => first.frames.length === 1)
    const resumeAt = first.frames.at(-1)!.nextOffset
    first.ws.close()
    await first.closed
    await post(name, "text/plain", "b;")
    await post(name, "text/plain", "c;")
    const again = reader(`${base}/v1/stream/${name}?offset=${resumeAt}&live=ws`)
    await until(async () => again.frames.map((f) => f.data).join("") === "b;c;")
    again.ws.close()
  })

  test("fan-out: 50 sockets at one position each get every append once; a leaving client releases its socket", { timeout: 30_000 }, async () => {
    const name = uniq("ws-fan")
    const start = await put(name, "text/plain")
    const readers = Array.from({ length: 50 }, () => reader(`${base}/v1/stream/${name}?offset=${start}&live=ws`))
    await Promise.all(readers.map((r) => r.opened))
    await until(async () => (await stats(base, name)).sockets === 50)
    for (let i = 0; i < 5; i++) await post(name, "text/plain", `m${i};`)
    const all = "m0;m1;m2;m3;m4;"
    await until(async () => readers.every((r) => r.frames.map((f) => String(f.data)).join("") === all))
    for (const r of readers) r.ws.close()
    await until(async () => (await stats(base, name)).sockets === 0)
  })

  test("hibernation: an object holding only sockets is evicted while idle, and its readers get the next append once", { timeout: 40_000 }, async () => {
    const name = uniq("ws-idle")
    const start = await put(name, "text/plain")
    const r = reader(`${base}/v1/stream/${name}?offset=${start}&live=ws`)
    await until(async () => r.frames.length === 1)
    const before = (await stats(base, name)).constructed
    // Local workerd evicts an idle object with only hibernatable sockets after about 10 s.
    await new Promise((resolve) => setTimeout(resolve, 12_000))
    await post(name, "text/plain", "after the nap;")
    await until(async () => r.frames.length === 2)
    const s = await stats(base, name)
    expect(s.constructed, "the object was evicted and constructed again").toBeGreaterThan(before)
    expect(r.frames[1]!.data).toBe("after the nap;")
    // Frames arrive in order: a repeat of the first would come before this.
    await post(name, "text/plain", "again")
    await until(async () => r.frames.length >= 3)
    expect(r.frames.map((f) => f.data).slice(1), "exactly once").toEqual(["after the nap;", "again"])
    r.ws.close()
  })

  test("catch-up by more: a reader behind gets batches of at most 256 KiB, every byte once, also from a fork's inherited range, however often it asks for the next", { timeout: 60_000 }, async () => {
    // 1 MiB of numbered records in the source, a fork of it, and the fork's own tail.
    const record = (i: number) => `${String(i).padStart(7, "0")}\n`
    const part = (p: number) => Array.from({ length: 32_768 }, (_, i) => record(p * 32_768 + i)).join("")
    const src = uniq("ws-more-src")
    await put(src, "text/plain", part(0))
    for (const p of [1, 2, 3]) expect((await post(src, "text/plain", part(p))).status).toBe(204)
    const fork = uniq("ws-more-fork")
    const forked = await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${src}` } })
    expect(forked.status).toBe(201)
    expect((await post(fork, "text/plain", "own tail;")).status).toBe(204)
    const want = [0, 1, 2, 3].map(part).join("") + "own tail;"
    for (const name of [src, fork]) {
      const r = reader(`${base}/v1/stream/${name}?offset=-1&live=ws`)
      // A careless (or hostile) client: three `more` for every batch.
      r.ws.addEventListener("message", (e) => {
        if (!JSON.parse(String(e.data)).upToDate) for (let i = 0; i < 3; i++) r.ws.send("more")
      })
      await until(async () => r.frames.at(-1)?.upToDate === true, 30_000)
      expect(r.frames.length, `${name}: batches of at most 256 KiB`).toBeGreaterThanOrEqual(4)
      // A frame sent twice would arrive before the next append's.
      expect((await post(name, "text/plain", "end;")).status).toBe(204)
      await until(async () => String(r.frames.at(-1)?.data).endsWith("end;"))
      const got = r.frames.map((f) => String(f.data)).join("")
      const target = (name === src ? want.slice(0, -"own tail;".length) : want) + "end;"
      expect(got.length, `${name}: every byte once`).toBe(target.length)
      expect(got === target, `${name}: in order`).toBe(true)
      r.ws.close()
      await r.closed
    }
  })

  test("live=ws without an upgrade is a 400 with a reason", async () => {
    const name = uniq("ws-plain")
    await put(name, "text/plain")
    const r = await fetch(`${base}/v1/stream/${name}?offset=-1&live=ws`)
    expect(r.status).toBe(400)
    expect((await r.json()).error.code).toBe("UPGRADE_REQUIRED")
  })
})
