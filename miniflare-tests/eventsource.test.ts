/**
 * A bare EventSource resumes by itself (PROTOCOL.md §5.8): every SSE data event
 * carries `id: <next offset>`, the server ends connections after
 * SSE_MAX_LIFETIME_MS (3 s in the tests), and the reconnecting EventSource sends
 * `Last-Event-ID`, which overrides the `offset` its URL still names. Driven by
 * the `eventsource` npm package, a WHATWG EventSource implementation.
 */
import { expect, inject, test } from "vitest"
import { EventSource } from "eventsource"
import { uniq, until } from "./helpers"

const base = inject("baseUrl")

test("an EventSource reading across server-ended connections gets every message once, in order", { timeout: 30_000 }, async () => {
  const url = `${base}/v1/stream/${uniq("es")}`
  await fetch(url, { method: "PUT", headers: { "content-type": "text/plain" } })
  for (let i = 0; i < 3; i++) await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: `m${i};` })
  let received = ""
  const ids: Array<string> = []
  let opens = 0
  const es = new EventSource(`${url}?offset=-1&live=sse`)
  es.addEventListener("open", () => opens++)
  es.addEventListener("data", (e) => {
    received += e.data
    ids.push(e.lastEventId)
  })
  try {
    await until(async () => received === "m0;m1;m2;")
    // Keep appending while the server ends the connection at least twice.
    for (let i = 3; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 700))
      await fetch(url, { method: "POST", headers: { "content-type": "text/plain" }, body: `m${i};` })
    }
    const expected = Array.from({ length: 12 }, (_, i) => `m${i};`).join("")
    await until(async () => received.length >= expected.length, 15_000)
    expect(received, "nothing lost, nothing repeated").toBe(expected)
    expect(opens, "the server ended connections and the EventSource reconnected").toBeGreaterThanOrEqual(2)
    const head = await fetch(url, { method: "HEAD" })
    expect(ids.at(-1), "the last id is the stream's tail").toBe(head.headers.get("stream-next-offset"))
  } finally {
    es.close()
  }
})
