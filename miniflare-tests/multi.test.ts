/**
 * Several streams on one SSE connection (README, "Several streams on one
 * connection"): `GET /v1/multi?live=sse&s=<offset>:<path>...`. Each event is a
 * stream's WebSocket-transport frame tagged with its path; its `id:` lists
 * every stream's next offset, so `Last-Event-ID` resumes them all exactly.
 * The test worker ends SSE responses after 3 s, so readers here reconnect.
 */
import { describe, expect, inject, test } from "vitest"
import { EventSource } from "eventsource"
import { stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const text = { "content-type": "text/plain" }
const json = { "content-type": "application/json" }

interface Frame {
  stream: string
  data?: unknown
  encoding?: string
  nextOffset?: string
  upToDate?: boolean
  closed?: boolean
  gone?: boolean
}

const multiUrl = (streams: Array<[string, string]>) => {
  const q = new URLSearchParams({ live: "sse" })
  for (const [offset, name] of streams) q.append("s", `${offset}:${name}`)
  return `${base}/v1/multi?${q}`
}

/** Reads events of one response until `stop` says so or it ends; returns them with their ids. */
async function readEvents(url: string, headers: Record<string, string>, stop: (all: Array<{ id: string; frame: Frame }>) => boolean) {
  const c = new AbortController()
  const r = await fetch(url, { headers, signal: c.signal })
  expect(r.status).toBe(200)
  expect(r.headers.get("content-type")).toBe("text/event-stream")
  const got: Array<{ id: string; frame: Frame }> = []
  const decoder = new TextDecoder()
  let buffer = ""
  try {
    for await (const chunk of r.body!) {
      buffer += decoder.decode(chunk, { stream: true })
      const blocks = buffer.split("\n\n")
      buffer = blocks.pop() ?? ""
      for (const block of blocks) {
        let id = ""
        const data: Array<string> = []
        for (const line of block.split("\n")) {
          if (line.startsWith("id:")) id = line.slice(3).trim()
          else if (line.startsWith("data:")) data.push(line.slice(5))
        }
        if (data.length) got.push({ id, frame: JSON.parse(data.join("\n")) })
      }
      if (stop(got)) break
    }
  } finally {
    c.abort()
  }
  return got
}

const textOf = (events: Array<{ frame: Frame }>, name: string) =>
  events.filter((e) => e.frame.stream === name && typeof e.frame.data === "string").map((e) => e.frame.data).join("")

describe("multi-stream SSE", () => {
  test("two streams interleaved: tagged events, exact resume from any event's id with Last-Event-ID", { timeout: 30_000 }, async () => {
    const a = uniq("multi-a")
    const b = uniq("multi-b/nested")
    await fetch(`${base}/v1/stream/${a}`, { method: "PUT", headers: text })
    await fetch(`${base}/v1/stream/${b}`, { method: "PUT", headers: json })
    await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: text, body: "a0;" })
    await fetch(`${base}/v1/stream/${b}`, { method: "POST", headers: json, body: JSON.stringify({ n: 0, s: "line\nbreak" }) })
    const url = multiUrl([["-1", a], ["-1", b]])
    const live = readEvents(url, {}, (all) => textOf(all, a).length >= 9 && all.filter((e) => e.frame.stream === b).flatMap((e) => e.frame.data as Array<unknown>).length >= 3)
    for (let i = 1; i < 3; i++) {
      await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: text, body: `a${i};` })
      await fetch(`${base}/v1/stream/${b}`, { method: "POST", headers: json, body: JSON.stringify({ n: i }) })
    }
    const events = await live
    expect(textOf(events, a)).toBe("a0;a1;a2;")
    const bMessages = events.filter((e) => e.frame.stream === b).flatMap((e) => e.frame.data as Array<unknown>)
    expect(bMessages).toEqual([{ n: 0, s: "line\nbreak" }, { n: 1 }, { n: 2 }])
    for (const e of events) expect(e.id.split(",")).toHaveLength(2)
    // Resume from every event's id: the rest arrives exactly, nothing twice.
    for (let k = 0; k < events.length; k++) {
      const rest = events.slice(k + 1)
      const wantA = textOf(rest, a)
      const wantB = rest.filter((e) => e.frame.stream === b).flatMap((e) => e.frame.data as Array<unknown>)
      const resumed = await readEvents(url, { "last-event-id": events[k]!.id }, (all) =>
        [a, b].every((s) => all.some((e) => e.frame.stream === s && e.frame.upToDate)),
      )
      expect(textOf(resumed, a), `a after event ${k}`).toBe(wantA)
      expect(resumed.filter((e) => e.frame.stream === b).flatMap((e) => e.frame.data as Array<unknown>), `b after event ${k}`).toEqual(wantB)
    }
  })

  test("a bare EventSource reads two streams across server-ended connections, every message once", { timeout: 30_000 }, async () => {
    const a = uniq("multi-es-a")
    const b = uniq("multi-es-b")
    for (const s of [a, b]) await fetch(`${base}/v1/stream/${s}`, { method: "PUT", headers: text })
    const got: Record<string, string> = { [a]: "", [b]: "" }
    let opens = 0
    const es = new EventSource(multiUrl([["now", a], ["now", b]]))
    es.addEventListener("open", () => opens++)
    es.onmessage = (e) => {
      const f = JSON.parse(e.data) as Frame
      if (typeof f.data === "string") got[f.stream] += f.data
    }
    try {
      await until(async () => opens === 1)
      const want: Record<string, string> = { [a]: "", [b]: "" }
      // Longer than two SSE lifetimes (3 s each).
      for (let i = 0; i < 14; i++) {
        for (const s of [a, b]) {
          await fetch(`${base}/v1/stream/${s}`, { method: "POST", headers: text, body: `${s.slice(9, 11)}${i};` })
          want[s] += `${s.slice(9, 11)}${i};`
        }
        await new Promise((r) => setTimeout(r, 500))
      }
      await until(async () => got[a]!.length >= want[a]!.length && got[b]!.length >= want[b]!.length, 15_000)
      expect(got).toEqual(want)
      expect(opens, "the server ended connections and the EventSource reconnected").toBeGreaterThanOrEqual(2)
    } finally {
      es.close()
    }
  })

  test("a dropped socket to one object is reopened from its offset; a deleted stream gets a gone event; close ends it", { timeout: 30_000 }, async () => {
    const a = uniq("multi-drop-a")
    const b = uniq("multi-drop-b")
    for (const s of [a, b]) await fetch(`${base}/v1/stream/${s}`, { method: "PUT", headers: text })
    const events = readEvents(multiUrl([["now", a], ["now", b]]), {}, (all) => all.some((e) => e.frame.gone) && all.some((e) => e.frame.closed))
    await until(async () => (await stats(base, a)).sockets === 1 && (await stats(base, b)).sockets === 1)
    await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: text, body: "1;" })
    await fetch(`${base}/__test/stream/${a}?drop-sockets`, { method: "POST" })
    await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: text, body: "2;" })
    await until(async () => (await stats(base, a)).sockets === 1)
    await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: { ...text, "stream-closed": "true" }, body: "3;" })
    await fetch(`${base}/v1/stream/${b}`, { method: "DELETE" })
    const got = await events
    expect(textOf(got, a)).toBe("1;2;3;")
    expect(got.filter((e) => e.frame.stream === a && e.frame.closed)).toHaveLength(1)
    expect(got.filter((e) => e.frame.stream === b && e.frame.gone)).toHaveLength(1)
    await until(async () => (await stats(base, a)).sockets === 0)
  })

  test("bad requests get 400 with a reason; a missing stream 404; only GET", async () => {
    const a = uniq("multi-bad")
    await fetch(`${base}/v1/stream/${a}`, { method: "PUT", headers: text })
    const bad = [
      `${base}/v1/multi?s=-1:${a}`,
      `${base}/v1/multi?live=sse`,
      `${base}/v1/multi?live=sse&s=${a}`,
      `${base}/v1/multi?live=sse&s=-1:${a}&s=now:${a}`,
      `${base}/v1/multi?live=sse&s=junk:${a}`,
      `${base}/v1/multi?live=sse&s=-1:../x`,
      `${base}/v1/multi?live=sse${Array.from({ length: 33 }, (_, i) => `&s=-1:${a}-${i}`).join("")}`,
    ]
    for (const u of bad) {
      const r = await fetch(u)
      expect(r.status, u).toBe(400)
      expect((await r.json()).error.message, u).toBeTruthy()
    }
    const wrongId = await fetch(multiUrl([["-1", a]]), { headers: { "last-event-id": "x,y" } })
    expect(wrongId.status).toBe(400)
    const missing = await fetch(multiUrl([["-1", a], ["-1", uniq("nope")]]))
    expect(missing.status).toBe(404)
    await missing.arrayBuffer()
    const post = await fetch(multiUrl([["-1", a]]), { method: "POST", body: "x" })
    expect(post.status).toBe(405)
    expect(post.headers.get("allow")).toBe("GET, OPTIONS")
    await until(async () => (await stats(base, a)).sockets === 0)
  })
})
