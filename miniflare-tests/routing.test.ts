/** Routing in the Worker: stream paths to one Durable Object each, everything else refused (PROTOCOL.md §3, §12.2). */
import { describe, expect, inject, test } from "vitest"
import { start } from "./mf.mjs"
import { uniq } from "./helpers"

const base = inject("baseUrl")

describe("routing", () => {
  test("paths outside /v1/stream/ are 404 with browser security headers; / is the demo page", async () => {
    const page = await fetch(`${base}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get("x-content-type-options")).toBe("nosniff")
    expect(page.headers.get("content-security-policy")).toContain("default-src 'self'")
    expect((await fetch(`${base}/`, { method: "POST", body: "x" })).status).toBe(405)
    for (const p of ["/v1/streams/x", "/v2/stream/x", "/nothing-here.html"]) {
      const r = await fetch(`${base}${p}`, { method: "POST", body: "x" })
      expect(r.status, p).toBe(404)
      expect(r.headers.get("x-content-type-options")).toBe("nosniff")
    }
  })

  test("malformed stream paths are 400 with a reason", async () => {
    for (const p of ["/v1/stream/", "/v1/stream/a%2Fb", "/v1/stream/a%5Cb", "/v1/stream/%FF", "/v1/stream/a//b", "/v1/stream/a%00b", "/v1/stream/__ds"]) {
      const r = await fetch(`${base}${p}`, { method: "PUT" })
      expect(r.status, p).toBe(400)
      const body = (await r.json()) as { error: { code: string; message: string } }
      expect(body.error.message.length).toBeGreaterThan(0)
    }
  })

  test("the reserved __ds prefix is routed before streams: never a stream, unknown routes 404 (PROTOCOL.md §6)", async () => {
    for (const p of ["/v1/stream/__ds/x", "/v1/stream/__ds/subscriptions", "/v1/stream/__ds/jwks.json/x"]) {
      const r = await fetch(`${base}${p}`, { method: "PUT" })
      expect(r.status, p).toBe(404)
      const body = (await r.json()) as { error: { code: string; message: string } }
      expect(body.error.code).toBe("NOT_FOUND")
      expect(body.error.message.length).toBeGreaterThan(0)
    }
  })

  test("dot segments are resolved by URL parsing and never name a stream", async () => {
    const r = await fetch(`${base}/v1/stream/%2e%2e`, { method: "PUT" })
    expect(r.status).toBe(404)
  })

  test("an overlong path is 414", async () => {
    const r = await fetch(`${base}/v1/stream/${"a".repeat(1100)}`, { method: "PUT" })
    expect(r.status).toBe(414)
  })

  test("each path is its own stream", async () => {
    const a = `${base}/v1/stream/${uniq("route-a")}`
    const b = `${base}/v1/stream/${uniq("route-b")}`
    await fetch(a, { method: "PUT", headers: { "content-type": "text/plain" }, body: "in a" })
    await fetch(b, { method: "PUT", headers: { "content-type": "text/plain" } })
    expect(await (await fetch(a)).text()).toBe("in a")
    expect(await (await fetch(b)).text()).toBe("")
  })

  test("percent-encoded and plain spellings name the same stream", async () => {
    const name = uniq("canon")
    const put = await fetch(`${base}/v1/stream/${name}x`, { method: "PUT", headers: { "content-type": "text/plain" }, body: "same" })
    expect(put.status).toBe(201)
    const r = await fetch(`${base}/v1/stream/${name}%78`)
    expect(await r.text()).toBe("same")
  })

  test("a CORS preflight is answered by the Worker and allows If-None-Match", async () => {
    const r = await fetch(`${base}/v1/stream/anything`, {
      method: "OPTIONS",
      headers: { origin: "https://example.com", "access-control-request-method": "GET", "access-control-request-headers": "if-none-match" },
    })
    expect(r.status).toBe(204)
    expect(r.headers.get("access-control-allow-headers")).toMatch(/if-none-match/)
    expect(r.headers.get("access-control-allow-origin")).toBe("*")
  })

  test("unknown methods are 405 with Allow", async () => {
    const r = await fetch(`${base}/v1/stream/${uniq("m")}`, { method: "PATCH", body: "x" })
    expect(r.status).toBe(405)
    expect(r.headers.get("allow")).toContain("POST")
  })

  test("test-only routes do not exist without TEST_ROUTES", async () => {
    const { mf, base: prod } = await start({ vars: { TEST_ROUTES: "0" } })
    try {
      const r = await fetch(`${prod}/__test/stream/x`)
      expect(r.status).toBe(404)
    } finally {
      await mf.dispose()
    }
  })
})
