/**
 * Bad input over HTTP: every malformed request gets a 4xx with a reason,
 * and the streams it touched hold exactly what they held (PROTOCOL.md §5,
 * §12; issue "Reliability"). Raw sockets send what fetch() cannot.
 */
import { describe, expect, inject, test } from "vitest"
import { rawExchange, rawRequest } from "./raw-http.mjs"
import { uniq } from "./helpers"

const base = inject("baseUrl")
const MiB = 1024 * 1024

interface Case {
  name: string
  send: (path: string) => Promise<{ status: number; body: string }>
}

const viaFetch =
  (init: RequestInit, query = "") =>
  async (path: string) => {
    const r = await fetch(`${base}${path}${query}`, init)
    return { status: r.status, body: await r.text() }
  }

const viaRaw =
  (build: (path: string) => Buffer, opts: { halfClose?: boolean } = {}) =>
  async (path: string) =>
    rawExchange(base, build(path), opts)

const text = { "content-type": "text/plain" }
const producer = (epoch: string, seq: string) => ({ ...text, "producer-id": "p", "producer-epoch": epoch, "producer-seq": seq })

const cases: Array<Case> = [
  { name: "invalid UTF-8 in the offset", send: viaFetch({}, "?offset=%FF%FE") },
  { name: "NUL in the offset", send: viaFetch({}, "?offset=%00") },
  { name: "raw bytes in the query", send: viaRaw((p) => rawRequest("GET", `${p}?offset=\xff\x00`, [])) },
  { name: "NUL in a header", send: viaRaw((p) => rawRequest("POST", p, ["Content-Type: text/plain", "Content-Length: 1", "Stream-Seq: a\u0000b"], Buffer.from("x"))) },
  {
    name: "invalid UTF-8 in a producer id",
    send: viaRaw((p) =>
      rawRequest("POST", p, ["Content-Type: text/plain", "Content-Length: 1", "Producer-Id: \xff\xfe", "Producer-Epoch: 0", "Producer-Seq: 0"], Buffer.from("x"))
    ),
  },
  { name: "a 100 KB header value", send: viaFetch({ method: "POST", headers: { ...text, "stream-seq": "x".repeat(100_000) }, body: "x" }) },
  { name: "a 20 KB path", send: async () => viaFetch({ method: "POST", headers: text, body: "x" })(`/v1/stream/${"a".repeat(20_000)}`) },
  { name: "an encoded slash in the path", send: async (p) => viaFetch({ method: "POST", headers: text, body: "x" })(`${p}%2Fother`) },
  { name: "an encoded dot segment in the path", send: async (p) => viaFetch({ method: "POST", headers: text, body: "x" })(`${p}/%2e%2e/%2e%2e/%2e%2e/x`) },
  { name: "an unknown method", send: viaFetch({ method: "PATCH", headers: text, body: "x" }) },
  { name: "a body over the limit", send: viaFetch({ method: "POST", headers: text, body: new Uint8Array(16 * MiB + 1) }) },
  {
    name: "a truncated chunked body",
    send: viaRaw((p) => rawRequest("POST", p, ["Content-Type: text/plain", "Transfer-Encoding: chunked"], Buffer.from("5\r\nhel")), { halfClose: true }),
  },
  { name: "a malformed chunk size", send: viaRaw((p) => rawRequest("POST", p, ["Content-Type: text/plain", "Transfer-Encoding: chunked"], Buffer.from("zz\r\nhello\r\n0\r\n\r\n"))) },
  { name: "an empty append", send: viaFetch({ method: "POST", headers: text, body: "" }) },
  { name: "a wrong content type", send: viaFetch({ method: "POST", headers: { "content-type": "application/json" }, body: "{}" }) },
  { name: "a malformed content type", send: viaFetch({ method: "POST", headers: { "content-type": "not a type" }, body: "x" }) },
  { name: "a missing content type", send: viaRaw((p) => rawRequest("POST", p, ["Content-Length: 1"], Buffer.from("x"))) },
  { name: "producer epoch 1e3", send: viaFetch({ method: "POST", headers: producer("1e3", "0"), body: "x" }) },
  { name: "producer epoch -1", send: viaFetch({ method: "POST", headers: producer("-1", "0"), body: "x" }) },
  { name: "producer seq 0x10", send: viaFetch({ method: "POST", headers: producer("0", "0x10"), body: "x" }) },
  { name: "producer epoch past 2^53", send: viaFetch({ method: "POST", headers: producer("9007199254740992", "0"), body: "x" }) },
  { name: "producer seq past 2^64", send: viaFetch({ method: "POST", headers: producer("0", "99999999999999999999"), body: "x" }) },
  { name: "producer headers incomplete", send: viaFetch({ method: "POST", headers: { ...text, "producer-id": "p" }, body: "x" }) },
  { name: "a junk TTL on re-create", send: viaFetch({ method: "PUT", headers: { ...text, "stream-ttl": "1.5" } }) },
  { name: "TTL and Expires-At together", send: viaFetch({ method: "PUT", headers: { ...text, "stream-ttl": "1", "stream-expires-at": "2099-01-01T00:00:00Z" } }) },
  { name: "a junk offset", send: viaFetch({}, "?offset=0000000000000000_000000000000000x") },
  { name: "an offset past the tail", send: viaFetch({}, "?offset=0000000000000000_0000000000000999") },
  { name: "a repeated offset", send: viaFetch({}, "?offset=-1&offset=-1") },
  { name: "a live read without an offset", send: viaFetch({}, "?live=sse") },
  { name: "a junk fork sub-offset", send: async (p) => viaFetch({ method: "PUT", headers: { "stream-forked-from": p, "stream-fork-sub-offset": "-1" } })(`${p}-fork`) },
]

describe("bad input", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s: a 4xx with a reason, nothing changed", { timeout: 30_000 }, async (_name, c) => {
    const path = `/v1/stream/${uniq("bad")}`
    expect((await fetch(`${base}${path}`, { method: "PUT", headers: text, body: "kept" })).status).toBe(201)
    const before = await fetch(`${base}${path}`, { method: "HEAD" })
    const r = await c.send(path)
    expect(r.status, r.body).toBeGreaterThanOrEqual(400)
    expect(r.status, r.body).toBeLessThan(500)
    expect(r.body.length, "a reason").toBeGreaterThan(0)
    const after = await fetch(`${base}${path}`)
    expect(await after.text()).toBe("kept")
    expect(after.headers.get("stream-next-offset")).toBe(before.headers.get("stream-next-offset"))
  })

  test("invalid JSON leaves a JSON stream as it was", async () => {
    const path = `${base}/v1/stream/${uniq("badjson")}`
    await fetch(path, { method: "PUT", headers: { "content-type": "application/json" }, body: "[1]" })
    for (const body of ["{", "[1,]", "nul", "[]", '{"a":1} {"b":2}', "\u0000"]) {
      const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body })
      expect(r.status, body).toBe(400)
      expect(((await r.json()) as { error: { message: string } }).error.message.length).toBeGreaterThan(0)
    }
    expect(await (await fetch(path)).json()).toEqual([1])
  })

  test("methods workerd itself does not know are refused before the Worker runs", async () => {
    // workerd's HTTP parser answers 501 to unregistered methods; known ones reach us (405 above).
    const path = `/v1/stream/${uniq("frob")}`
    await fetch(`${base}${path}`, { method: "PUT", headers: text, body: "kept" })
    const r = await rawExchange(base, rawRequest("FROB", path, ["Content-Length: 0"]))
    expect(r.status).toBe(501)
    expect(await (await fetch(`${base}${path}`)).text()).toBe("kept")
  })
})
