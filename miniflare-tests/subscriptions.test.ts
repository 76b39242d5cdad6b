/**
 * Subscriptions (PROTOCOL.md §6, §7; README, Subscriptions) beyond the
 * conformance suite's six tests: webhook retries with signatures that
 * verify, a restart between retries, a pattern over 120 streams (backfill
 * and discovery), pull-wake leases, deletion, SSRF refusals, bad input and
 * access control.
 */
import { afterAll, describe, expect, inject, test } from "vitest"
import { createHmac } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { start } from "./mf.mjs"
import { receiver, verifies } from "./webhooks.mjs"
import { stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const stream = (b: string, p: string) => `${b}/v1/stream/${p}`
const sub = (b: string, id: string) => `${b}/v1/stream/__ds/subscriptions/${id}`
const json = { "content-type": "application/json" }

async function put(b: string, id: string, body: object, headers: Record<string, string> = {}) {
  return fetch(sub(b, id), { method: "PUT", headers: { ...json, ...headers }, body: JSON.stringify(body) })
}

async function describeSub(b: string, id: string) {
  const r = await fetch(sub(b, id))
  expect(r.status).toBe(200)
  return (await r.json()) as { streams: Array<{ path: string; acked_offset: string; link_type: string }>; status: string; generation: number }
}

async function append(b: string, p: string, body: object) {
  const r = await fetch(stream(b, p), { method: "POST", headers: json, body: JSON.stringify(body) })
  expect(r.status).toBe(204)
  return r.headers.get("stream-next-offset")!
}

async function create(b: string, p: string, body?: object) {
  const r = await fetch(stream(b, p), { method: "PUT", headers: json, body: body ? JSON.stringify(body) : undefined })
  expect(r.status).toBe(201)
  return r.headers.get("stream-next-offset")!
}

describe("webhook delivery", () => {
  test("a receiver failing 3 times then succeeding gets one acked delivery per wake, each signed", { timeout: 30_000 }, async () => {
    const hook = await receiver((n) => (n <= 3 ? { status: 500, body: {} } : { status: 200, body: { done: true } }))
    const id = uniq("retry")
    try {
      const created = await put(base, id, { type: "webhook", pattern: `${id}/*`, webhook: { url: hook.url } })
      expect(created.status).toBe(201)
      const jwksUrl = ((await created.json()) as { webhook: { signing: { jwks_url: string } } }).webhook.signing.jwks_url
      const jwks = await (await fetch(jwksUrl)).json()
      const tail = await create(base, `${id}/a`, { n: 1 })
      await until(async () => hook.received.length >= 4, 20_000)
      const [first, ...rest] = hook.received
      // The same wake, retried: 1 s, 2 s, 4 s apart (±20 % jitter).
      for (const r of rest) {
        expect(r.body.wake_id).toBe(first.body.wake_id)
        expect(r.body.generation).toBe(first.body.generation)
      }
      const gaps = rest.map((r, i) => r.at - hook.received[i].at)
      expect(gaps[0]).toBeGreaterThanOrEqual(750)
      expect(gaps[1]).toBeGreaterThanOrEqual(1_550)
      expect(gaps[2]).toBeGreaterThanOrEqual(3_150)
      for (const r of hook.received) expect(verifies(r.rawBody, r.signature, jwks)).toBe(true)
      expect(first.body.streams).toEqual([
        expect.objectContaining({ path: `${id}/a`, tail_offset: tail, has_pending: true, link_type: "glob" }),
      ])
      await until(async () => (await describeSub(base, id)).streams[0]?.acked_offset === tail)
      expect((await describeSub(base, id)).status).toBe("active")
      // New data: a new wake (next generation), delivered once.
      const tail2 = await append(base, `${id}/a`, { n: 2 })
      await until(async () => hook.received.length >= 5)
      expect(hook.received[4].body.generation).toBe(first.body.generation + 1)
      await until(async () => (await describeSub(base, id)).streams[0]?.acked_offset === tail2)
      expect(hook.received.length).toBe(5)
      // A tampered body does not verify.
      expect(verifies(first.rawBody.replace(id, `${id}x`), first.signature, jwks)).toBe(false)
    } finally {
      await fetch(sub(base, id), { method: "DELETE" })
      await hook.close()
    }
  })

  test("a worker restart between retries loses no delivery", { timeout: 40_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ds-subs-"))
    const hook = await receiver((n) => (n === 1 ? { status: 503, body: {} } : { status: 200, body: { done: true } }))
    const id = uniq("restart")
    try {
      const first = await start({ persistDir: dir })
      let tail = ""
      try {
        expect((await put(first.base, id, { type: "webhook", pattern: `${id}/*`, webhook: { url: hook.url } })).status).toBe(201)
        tail = await create(first.base, `${id}/a`, { n: 1 })
        await until(async () => hook.received.length >= 1)
      } finally {
        await first.mf.dispose()
      }
      const second = await start({ persistDir: dir })
      try {
        // The retry scheduled before the restart fires from storage.
        await until(async () => hook.received.length >= 2, 15_000)
        expect(hook.received[1].body.wake_id).toBe(hook.received[0].body.wake_id)
        await until(async () => (await describeSub(second.base, id)).streams[0]?.acked_offset === tail)
      } finally {
        await second.mf.dispose()
      }
    } finally {
      await hook.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("cost", () => {
  test("an append to a stream with one matching subscription: one request to the stream, one to the subscription, one alarm", { timeout: 20_000 }, async () => {
    const hook = await receiver(() => ({ status: 200, body: { done: true } }))
    const id = uniq("cost")
    const p = `${id}/a`
    const counts = async () => (await (await fetch(`${base}/__test/subscription/${id}`)).json()) as { requests: number; alarms: number }
    try {
      expect((await put(base, id, { type: "webhook", pattern: `${id}/*`, webhook: { url: hook.url } })).status).toBe(201)
      await create(base, p, { n: 0 })
      await until(async () => hook.received.length === 1)
      await until(async () => (await describeSub(base, id)).streams[0]?.acked_offset !== undefined && (await counts()).alarms >= 1)
      const before = await counts()
      const streamBefore = (await stats(base, p)).requests
      await append(base, p, { n: 1 })
      await until(async () => hook.received.length === 2)
      // No GET of the subscription until the counts are read (the counts
      // route itself is not counted).
      const after = await counts()
      expect((await stats(base, p)).requests - streamBefore).toBe(1)
      expect(after.requests - before.requests).toBe(1)
      const tail = hook.received[1].body.streams[0].tail_offset
      await until(async () => (await describeSub(base, id)).streams[0].acked_offset === tail)
      expect((await counts()).alarms - before.alarms).toBe(1)
    } finally {
      await fetch(sub(base, id), { method: "DELETE" })
      await hook.close()
    }
  })
})

describe("patterns", () => {
  test("120 existing and 5 new streams under one pattern wake one subscription; history is not replayed", { timeout: 60_000 }, async () => {
    const hook = await receiver(() => ({ status: 200, body: { done: true } }))
    const id = uniq("fan")
    const names = Array.from({ length: 120 }, (_, i) => `${id}/s${String(i).padStart(3, "0")}`)
    try {
      const tails = new Map<string, string>()
      for (const n of names) tails.set(n, await create(base, n, { n: 0 }))
      // Not matched: a deeper path and a sibling prefix.
      await create(base, `${id}/deeper/x`, { n: 0 })
      await create(base, `${id}-other/x`, { n: 0 })
      expect((await put(base, id, { type: "webhook", pattern: `${id}/*`, webhook: { url: hook.url } })).status).toBe(201)
      // Backfill links every existing match at its tail (two index pages).
      await until(async () => (await describeSub(base, id)).streams.length === 120)
      const linked = await describeSub(base, id)
      for (const s of linked.streams) expect(s.acked_offset).toBe(tails.get(s.path))
      expect(hook.received.length).toBe(0)
      for (const n of names) tails.set(n, await append(base, n, { n: 1 }))
      for (let i = 0; i < 5; i++) {
        const n = `${id}/new-${i}`
        tails.set(n, await create(base, n, { n: 0 }))
      }
      await until(async () => {
        const d = await describeSub(base, id)
        return d.streams.length === 125 && d.streams.every((s) => s.acked_offset === tails.get(s.path))
      }, 30_000)
      // One subscription, woken in successive generations (never two at once).
      const gens = hook.received.map((r) => r.body.generation)
      expect(gens).toEqual([...gens].sort((a, b) => a - b))
      expect(new Set(gens).size).toBe(gens.length)
      expect(gens.length).toBeLessThanOrEqual(125)
    } finally {
      await fetch(sub(base, id), { method: "DELETE" })
      await hook.close()
    }
  })

  test("a deleted stream is unlinked; a deleted subscription fences its callbacks", { timeout: 20_000 }, async () => {
    const hook = await receiver(() => ({ status: 200, body: {} }))
    const id = uniq("del")
    try {
      expect((await put(base, id, { type: "webhook", pattern: `${id}/*`, streams: ["elsewhere/x"], webhook: { url: hook.url } })).status).toBe(201)
      await create(base, `${id}/a`, { n: 1 })
      await until(async () => hook.received.length >= 1)
      expect((await describeSub(base, id)).streams.map((s) => s.path).sort()).toEqual([`${id}/a`, "elsewhere/x"])
      expect((await fetch(stream(base, `${id}/a`), { method: "DELETE" })).status).toBe(204)
      await until(async () => (await describeSub(base, id)).streams.every((s) => s.path !== `${id}/a`))
      const { callback_url, callback_token, wake_id, generation } = hook.received[0].body
      expect((await fetch(sub(base, id), { method: "DELETE" })).status).toBe(204)
      const late = await fetch(callback_url, {
        method: "POST",
        headers: { ...json, authorization: `Bearer ${callback_token}` },
        body: JSON.stringify({ wake_id, generation, done: true }),
      })
      expect(late.status).toBe(404)
      expect((await fetch(sub(base, id))).status).toBe(404)
      // Re-created under the same id: generations continue, old tokens stay fenced.
      expect((await put(base, id, { type: "webhook", pattern: `${id}/*`, webhook: { url: hook.url } })).status).toBe(201)
      await create(base, `${id}/b`, { n: 1 })
      await until(async () => hook.received.length >= 2)
      expect(hook.received[1].body.generation).toBeGreaterThan(generation)
      const stale = await fetch(callback_url, {
        method: "POST",
        headers: { ...json, authorization: `Bearer ${callback_token}` },
        body: JSON.stringify({ wake_id, generation, done: true }),
      })
      expect(stale.status).toBe(409)
    } finally {
      await fetch(sub(base, id), { method: "DELETE" })
      await hook.close()
    }
  })
})

describe("bounds", () => {
  test("a stream notifies at most 100 subscriptions; a deleted one frees its place at the next append", { timeout: 60_000 }, async () => {
    const id = uniq("full")
    const target = `${id}/x`
    await create(base, target, { n: 0 })
    const body = { type: "pull-wake", streams: [target], wake_stream: `${id}-wake` }
    for (let i = 0; i < 100; i++) expect((await put(base, `${id}-${i}`, body)).status).toBe(201)
    const over = await put(base, `${id}-100`, body)
    expect(over.status).toBe(409)
    const e = (await over.json()) as { error: { code: string; message: string } }
    expect(e.error.code).toBe("STREAM_SUBSCRIPTIONS_FULL")
    expect(e.error.message).toContain(target)
    expect((await fetch(sub(base, `${id}-0`), { method: "DELETE" })).status).toBe(204)
    // The stream learns it at its next notification (the deleted one answers "not linked").
    await append(base, target, { n: 1 })
    expect((await put(base, `${id}-100`, body)).status).toBe(201)
    const linked = await describeSub(base, `${id}-100`)
    expect(linked.streams).toEqual([expect.objectContaining({ path: target, link_type: "explicit" })])
    for (let i = 1; i <= 100; i++) await fetch(sub(base, `${id}-${i}`), { method: "DELETE" })
  })
})

describe("pull-wake", () => {
  test("an expired lease frees the claim and writes a new wake event", { timeout: 20_000 }, async () => {
    const id = uniq("lease")
    const wake = `${id}-wake`
    await create(base, wake)
    expect((await put(base, id, { type: "pull-wake", pattern: `${id}/*`, wake_stream: wake, lease_ttl_ms: 1000 })).status).toBe(201)
    await create(base, `${id}/a`, { n: 1 })
    const events = async () => (await (await fetch(`${stream(base, wake)}?offset=-1`)).json()) as Array<{ generation: number; stream: string }>
    await until(async () => (await events()).length === 1)
    expect((await events())[0]).toMatchObject({ type: "wake", subscription_id: id, stream: `${id}/a` })
    const claim = await fetch(`${sub(base, id)}/claim`, { method: "POST", headers: json, body: JSON.stringify({ worker: "w1" }) })
    expect(claim.status).toBe(200)
    const claimed = (await claim.json()) as { token: string; wake_id: string; generation: number }
    // No heartbeat: the lease runs out and the pending work is offered again.
    await until(async () => (await events()).length === 2, 10_000)
    expect((await events())[1].generation).toBe(claimed.generation + 1)
    const late = await fetch(`${sub(base, id)}/ack`, {
      method: "POST",
      headers: { ...json, authorization: `Bearer ${claimed.token}` },
      body: JSON.stringify({ wake_id: claimed.wake_id, generation: claimed.generation, done: true }),
    })
    expect(late.status).toBe(409)
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe("FENCED")
    const again = await fetch(`${sub(base, id)}/claim`, { method: "POST", headers: json, body: JSON.stringify({ worker: "w2" }) })
    expect(again.status).toBe(200)
    const forged = await fetch(`${sub(base, id)}/release`, {
      method: "POST",
      headers: { ...json, authorization: `Bearer ${claimed.token.slice(0, -4)}AAAA` },
      body: JSON.stringify({ wake_id: claimed.wake_id, generation: claimed.generation }),
    })
    expect(forged.status).toBe(401)
    await fetch(sub(base, id), { method: "DELETE" })
  })
})

describe("bad input", () => {
  test("malformed requests get a 4xx with a reason", async () => {
    const id = uniq("bad")
    const cases: Array<[string, RequestInit, number, string]> = [
      [sub(base, id), { method: "PUT", headers: json, body: "{" }, 400, "INVALID_REQUEST"],
      [sub(base, id), { method: "PUT", headers: json, body: JSON.stringify({ type: "webhook", pattern: "a/*" }) }, 400, "INVALID_REQUEST"],
      [sub(base, id), { method: "PUT", headers: json, body: JSON.stringify({ type: "pull-wake", pattern: "a/*", wake_stream: "w", lease_ttl_ms: 5 }) }, 400, "INVALID_REQUEST"],
      [sub(base, "bad id!"), { method: "GET" }, 400, "INVALID_REQUEST"],
      [sub(base, id), { method: "POST", headers: json, body: "{}" }, 405, "METHOD_NOT_ALLOWED"],
      [sub(base, id), { method: "GET" }, 404, "SUBSCRIPTION_NOT_FOUND"],
      [`${sub(base, id)}/claim`, { method: "POST", headers: json, body: JSON.stringify({ worker: "w" }) }, 404, "SUBSCRIPTION_NOT_FOUND"],
      [`${sub(base, id)}/nope`, { method: "GET" }, 404, "NOT_FOUND"],
      [`${base}/v1/stream/__ds/other`, { method: "GET" }, 404, "NOT_FOUND"],
      [sub(base, id), { method: "PUT", headers: json, body: "x".repeat(70_000) }, 413, "PAYLOAD_TOO_LARGE"],
    ]
    for (const [url, init, status, code] of cases) {
      const r = await fetch(url, init)
      expect(r.status, `${init.method} ${url}`).toBe(status)
      const e = (await r.json()) as { error: { code: string; message: string } }
      expect(e.error.code).toBe(code)
      expect(e.error.message.length).toBeGreaterThan(0)
    }
    // Every 405 names the route's methods (RFC 9110 §15.5.6).
    for (const [url, method, allow] of [
      [sub(base, id), "POST", "GET, PUT, DELETE, OPTIONS"],
      [`${sub(base, id)}/streams`, "GET", "POST, OPTIONS"],
      [`${sub(base, id)}/streams/a%2Fb`, "GET", "DELETE, OPTIONS"],
      [`${sub(base, id)}/ack`, "GET", "POST, OPTIONS"],
      [`${base}/v1/stream/__ds/jwks.json`, "POST", "GET, HEAD, OPTIONS"],
    ]) {
      const r = await fetch(url, { method })
      expect(r.status, `${method} ${url}`).toBe(405)
      expect(r.headers.get("allow"), `${method} ${url}`).toBe(allow)
      await r.arrayBuffer()
    }
    const conflict = { type: "pull-wake", pattern: `${id}/*`, wake_stream: "w" }
    expect((await put(base, id, conflict)).status).toBe(201)
    expect((await put(base, id, { ...conflict, description: "changed" })).status).toBe(409)
    await fetch(sub(base, id), { method: "DELETE" })
  })
})

describe("SSRF protection (PROTOCOL.md §12.8)", () => {
  test("unsafe webhook URLs are refused with reasons; loopback only with the development variable", async () => {
    for (const url of [
      "http://10.0.0.1/hook",
      "https://192.168.0.10/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://[fd00::1]/hook",
      "https://metadata.google.internal/",
      "http://hooks.example.com/hook",
      "ftp://hooks.example.com/",
      "https://user:pw@hooks.example.com/",
    ]) {
      const r = await put(base, uniq("ssrf"), { type: "webhook", pattern: "a/*", webhook: { url } })
      expect(r.status, url).toBe(400)
      const e = (await r.json()) as { error: { code: string; message: string } }
      expect(e.error.code).toBe("WEBHOOK_URL_REJECTED")
      expect(e.error.message).toMatch(/webhook\.url/)
    }
    const prod = await start({ vars: { SUBSCRIPTION_DEV_LOOPBACK: "0" } })
    try {
      const loop = await put(prod.base, "loop", { type: "webhook", pattern: "a/*", webhook: { url: "http://127.0.0.1:9/hook" } })
      expect(loop.status).toBe(400)
      expect(((await loop.json()) as { error: { message: string } }).error.message).toMatch(/SUBSCRIPTION_DEV_LOOPBACK/)
      const ok = await put(prod.base, "public", { type: "webhook", pattern: "a/*", webhook: { url: "https://hooks.example.com/x" } })
      expect(ok.status).toBe(201)
    } finally {
      await prod.mf.dispose()
    }
  })
})

describe("access control", () => {
  const SECRET = "subscription-test-secret"
  const mint = (scope: string) => {
    const b = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url")
    const input = `${b({ alg: "HS256" })}.${b({ scope, exp: Math.floor(Date.now() / 1000) + 600 })}`
    return `${input}.${createHmac("sha256", SECRET).update(input).digest("base64url")}`
  }
  let jwt: Awaited<ReturnType<typeof start>> | undefined
  afterAll(async () => {
    await jwt?.mf.dispose()
  })

  test("managing needs subscribe on the id and read on what it covers; wake actions need the wake token", async () => {
    jwt = await start({ vars: { AUTH_MODE: "jwt", AUTH_JWT_SECRET: SECRET } })
    const b = jwt.base
    const body = { type: "pull-wake", pattern: "events/*", wake_stream: "wake/pool" }
    const as = (scope: string) => ({ authorization: `Bearer ${mint(scope)}` })
    expect((await put(b, "s1", body)).status).toBe(401)
    expect((await put(b, "s1", body, as("read:** append:**"))).status).toBe(403)
    expect((await put(b, "s1", body, as("subscribe:s1 read:events/a append:wake/**"))).status).toBe(403)
    expect((await put(b, "s1", body, as("subscribe:s1 read:events/** "))).status).toBe(403)
    expect((await put(b, "s1", body, as("subscribe:s2 read:events/** append:wake/**"))).status).toBe(403)
    expect((await put(b, "s1", body, as("subscribe:s1 read:events/** append:wake/**"))).status).toBe(201)
    expect((await fetch(sub(b, "s1"), { headers: as("subscribe:*") })).status).toBe(200)
    expect((await fetch(sub(b, "s1"))).status).toBe(401)
    const add = (scope: string) =>
      fetch(`${sub(b, "s1")}/streams`, { method: "POST", headers: { ...json, ...as(scope) }, body: JSON.stringify({ streams: ["private/x"] }) })
    expect((await add("subscribe:s1 read:events/**")).status).toBe(403)
    expect((await add("subscribe:s1 read:private/x")).status).toBe(204)
    const claim = await fetch(`${sub(b, "s1")}/claim`, { method: "POST", headers: json, body: JSON.stringify({ worker: "w" }) })
    expect(claim.status).toBe(401)
    const ack = await fetch(`${sub(b, "s1")}/ack`, {
      method: "POST",
      headers: { ...json, authorization: `Bearer ${mint("*:**")}` },
      body: JSON.stringify({ wake_id: "w_x", generation: 1 }),
    })
    expect(ack.status).toBe(401)
    expect(((await ack.json()) as { error: { code: string } }).error.code).toBe("TOKEN_INVALID")
    const keys = await fetch(`${b}/v1/stream/__ds/jwks.json`)
    expect(keys.status).toBe(200)
    expect(keys.headers.get("content-type")).toContain("application/jwk-set+json")
    expect((await fetch(sub(b, "s1"), { method: "DELETE", headers: as("subscribe:s1") })).status).toBe(204)
  })
})
