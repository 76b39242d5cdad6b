/**
 * Hardening (the platform failing under us, hostile sizes, old storage), on the
 * shared worker: committed writes never answer 5xx; platform errors are one
 * rendered 503; a slow fork creation racing its grace period never leaves a fork
 * without its reference; oversized bodies never reach the object; unknown schema
 * versions are refused and old ones migrated.
 */
import { describe, expect, inject, test } from "vitest"
import { rawExchange } from "./raw-http.mjs"
import { stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const text = { "content-type": "text/plain" }

async function control(name: string, query: string) {
  const r = await fetch(`${base}/__test/stream/${name}?${query}`, { method: "POST" })
  expect(r.status).toBe(200)
}

/** The headers every rendered error carries, so a browser sees the reason, not a CORS failure. */
function expectRendered503(r: Response) {
  expect(r.status).toBe(503)
  expect(r.headers.get("retry-after")).toBe("1")
  expect(r.headers.get("access-control-allow-origin")).toBe("*")
  expect(r.headers.get("x-content-type-options")).toBe("nosniff")
  expect(r.headers.get("content-type")).toBe("application/json")
}

describe("committed writes and platform errors", () => {
  test("a create whose alarm cannot be set still answers 201, and the alarm is set later", { timeout: 20_000 }, async () => {
    const name = uniq("arm")
    const url = `${base}/v1/stream/${name}`
    await control(name, "fault=arm-fails&count=1")
    const r = await fetch(url, { method: "PUT", headers: { ...text, "stream-ttl": "2" }, body: "x" })
    expect(r.status, "the stream is durable: a 5xx would make a client retry it").toBe(201)
    expect((await stats(base, name)).alarm).toBeNull()
    // The next event sets the alarm it owes, and the alarm frees the stream with no request.
    expect((await fetch(url, { method: "HEAD" })).status).toBe(200)
    expect((await stats(base, name)).alarm).not.toBeNull()
    await until(async () => (await stats(base, name)).chunkRows === 0 && !(await stats(base, name)).exists, 10_000)
  })

  test("a read the platform fails is retried once; a write gets one rendered 503", async () => {
    const name = uniq("throws")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: text, body: "kept" })
    await control(name, "fault=throws&count=1")
    const read = await fetch(`${url}?offset=-1`)
    expect(read.status).toBe(200)
    expect(await read.text()).toBe("kept")
    await control(name, "fault=throws&count=1")
    const write = await fetch(url, { method: "POST", headers: text, body: "lost?" })
    expectRendered503(write)
    expect((await write.json()).error.code).toBe("UNAVAILABLE")
    await control(name, "fault=throws&count=2")
    expectRendered503(await fetch(`${url}?offset=-1`))
    expect(await (await fetch(`${url}?offset=-1`)).text(), "nothing was appended").toBe("kept")
  })

  test("a fork whose acquire outlasts the grace period is refused, never left without a reference", { timeout: 30_000 }, async () => {
    const src = uniq("race-src")
    const fork = uniq("race-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: text, body: "source bytes" })
    // The fork's object waits 2.5 s after the source's answer (grace: 2 s), and
    // every release waits as long: the alarm's release is in flight when the
    // creation tries to commit.
    await control(fork, "fault=slow-fork&ms=2500")
    const r = await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${src}` } })
    expectRendered503(r)
    await until(async () => (await stats(base, src)).refs === 0 && (await stats(base, fork)).outbox === 0, 15_000)
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "HEAD" })).status).toBe(404)
  })
})

describe("hostile sizes", () => {
  test("a declared Content-Length above the limit is refused before the body is read", async () => {
    const name = uniq("huge")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: text })
    const before = (await stats(base, name)).requests
    // 1 GiB declared, a few bytes sent: the answer comes without waiting for the rest.
    const head = `POST /v1/stream/${name} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1073741824\r\n\r\nabc`
    const r = await rawExchange(base, Buffer.from(head, "latin1"), { timeoutMs: 5_000 })
    expect(r.status).toBe(413)
    expect(r.body).toContain("PAYLOAD_TOO_LARGE")
    expect((await stats(base, name)).requests, "the object never saw it").toBe(before)
  })
})

describe("schema versions", () => {
  test("storage of an unknown newer schema is refused, and a version-1 store is migrated", async () => {
    const name = uniq("schema")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: text, body: "v1 data" })
    await control(name, "schema-version=99")
    const refused = await fetch(`${url}?offset=-1`)
    expectRendered503(refused)
    // Back to a known (older) version: the next request migrates it and works.
    await control(name, "schema-version=1")
    const produce = { ...text, "producer-id": "p", "producer-epoch": "0", "producer-seq": "0" }
    expect((await fetch(url, { method: "POST", headers: produce, body: "+more" })).status).toBe(200)
    expect(await (await fetch(`${url}?offset=-1`)).text()).toBe("v1 data+more")
    expect((await stats(base, name)).producerRows).toBe(1)
  })
})
