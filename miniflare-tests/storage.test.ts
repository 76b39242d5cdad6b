/** SQLite storage in the object: large appends across rows, limits, and expiry freeing storage (PROTOCOL.md §5.1, §5.2). */
import { describe, expect, inject, test } from "vitest"
import { readAll, sha256, stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const MiB = 1024 * 1024

describe("storage", () => {
  test("a 10 MiB append spans several rows and reads back byte for byte", { timeout: 60_000 }, async () => {
    const name = uniq("big")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" } })
    const big = new Uint8Array(10 * MiB)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 11)) & 0xff
    const r = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: big })
    expect(r.status).toBe(204)
    expect((await stats(base, name)).chunkRows).toBeGreaterThanOrEqual(10)
    const { body, pages } = await readAll(url)
    expect(body.length).toBe(big.length)
    expect(sha256(body)).toBe(sha256(big))
    expect(pages).toBeGreaterThanOrEqual(3) // about 4 MiB per response
  })

  test("a JSON message larger than a row is stored across rows and read whole", { timeout: 60_000 }, async () => {
    const url = `${base}/v1/stream/${uniq("bigjson")}`
    await fetch(url, { method: "PUT", headers: { "content-type": "application/json" } })
    const text = "x".repeat(3 * MiB)
    const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify([1, text, 2]) })
    expect(r.status).toBe(204)
    const got = (await (await fetch(url)).json()) as Array<unknown>
    expect(got).toEqual([1, text, 2])
  })

  test("an append above MAX_APPEND_BYTES is a 413 with a reason, and changes nothing", { timeout: 60_000 }, async () => {
    const url = `${base}/v1/stream/${uniq("limit")}`
    await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: "keep" })
    const r = await fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array(16 * MiB + 1) })
    expect(r.status).toBe(413)
    expect(await r.text()).toMatch(/limit/)
    expect(await (await fetch(url)).text()).toBe("keep")
  })

  test("the alarm frees an expired stream's rows without any request touching it", { timeout: 20_000 }, async () => {
    const name = uniq("ttl")
    const url = `${base}/v1/stream/${name}`
    const r = await fetch(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "1" }, body: "soon gone" })
    expect(r.status).toBe(201)
    expect((await stats(base, name)).chunkRows).toBe(1)
    await until(async () => (await stats(base, name)).chunkRows === 0)
    expect((await fetch(url)).status).toBe(404)
  })
})
