/**
 * Access control (PROTOCOL.md §12.1, §12.3, §12.5; README, Access control), on a
 * worker in AUTH_MODE=jwt with two HS256 secrets (rotation), an Ed25519 and a
 * P-256 key in AUTH_JWKS, a PUBLIC_READ glob and a small rate limit. Tokens are
 * minted here with node:crypto.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import type { Miniflare } from "miniflare"
import { createHmac, generateKeyPairSync, sign } from "node:crypto"
import { execFileSync } from "node:child_process"
import { DurableStream, IdempotentProducer } from "@durable-streams/client"
import { WebSocket } from "undici"
import { start } from "./mf.mjs"
import { rawExchange } from "./raw-http.mjs"
import { stats, uniq, until } from "./helpers"

const OLD_SECRET = "old-secret-0123456789"
const NEW_SECRET = "new-secret-9876543210"
const ed = generateKeyPairSync("ed25519")
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" })
const edJwk = ed.publicKey.export({ format: "jwk" }) as { x: string }
const ecJwk = ec.publicKey.export({ format: "jwk" }) as { x: string; y: string }
const JWKS = JSON.stringify({
  keys: [
    { kty: "OKP", crv: "Ed25519", x: edJwk.x, kid: "ed1", alg: "EdDSA" },
    { kty: "EC", crv: "P-256", x: ecJwk.x, y: ecJwk.y, kid: "ec1" },
  ],
})
const RATE_LIMIT = 30

let mf: Miniflare
let base = ""
beforeAll(async () => {
  ;({ mf, base } = await start({
    vars: {
      AUTH_MODE: "jwt",
      AUTH_JWT_SECRET: `${OLD_SECRET} ${NEW_SECRET}`,
      AUTH_JWKS: JWKS,
      PUBLIC_READ: "public/**",
      MAX_READ_CHUNK_BYTES: "16",
    },
    ratelimits: { RATE_LIMITER: { simple: { limit: RATE_LIMIT, period: 60 } } },
  }))
})
afterAll(async () => {
  await mf.dispose()
})

const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url")
const now = () => Math.floor(Date.now() / 1000)

type Alg = "HS256" | "HS256-old" | "EdDSA" | "ES256"
interface Mint {
  scope: string
  alg?: Alg
  exp?: number
  nbf?: number
  sub?: string
  header?: object
}

/** A signed token (each test gets its own subject unless it names one). */
function mint({ scope, alg = "HS256", exp = now() + 600, nbf, sub = uniq("sub"), header }: Mint): string {
  const h = header ?? { alg: alg.startsWith("HS") ? "HS256" : alg, kid: alg === "EdDSA" ? "ed1" : alg === "ES256" ? "ec1" : undefined }
  const input = `${b64(h)}.${b64({ sub, exp, nbf, scope })}`
  let sig: Buffer
  if (alg === "EdDSA") sig = sign(null, Buffer.from(input), ed.privateKey)
  else if (alg === "ES256") sig = sign("sha256", Buffer.from(input), { key: ec.privateKey, dsaEncoding: "ieee-p1363" })
  else sig = createHmac("sha256", alg === "HS256-old" ? OLD_SECRET : NEW_SECRET).update(input).digest()
  return `${input}.${sig.toString("base64url")}`
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` })
const text = { "content-type": "text/plain" }
const all = (path: string) => `*:${path}`

/** The tokens every protected operation must refuse with 401, and why. */
function badTokens(scope: string): Array<[string, string]> {
  const input = `${b64({ alg: "HS256" })}.${b64({ exp: now() + 600, scope })}`
  // An HS256 token whose HMAC key is the Ed25519 public key: algorithm confusion.
  const confused = `${input}.${createHmac("sha256", Buffer.from(edJwk.x, "base64url")).update(input).digest("base64url")}`
  const unsigned = `${b64({ alg: "none" })}.${b64({ exp: now() + 600, scope })}.`
  const good = mint({ scope })
  const tampered = good.slice(0, -4) + (good.endsWith("AAAA") ? "BBBB" : "AAAA")
  const otherKey = `${input}.${createHmac("sha256", "not-our-secret").update(input).digest("base64url")}`
  return [
    ["expired", mint({ scope, exp: now() - 120 })],
    ["not yet valid", mint({ scope, nbf: now() + 600 })],
    ["bad signature", tampered],
    ["wrong key", otherKey],
    ["alg none", unsigned],
    ["HS/EdDSA confusion", confused],
    ["EdDSA signed by an unknown key", (() => {
      const other = generateKeyPairSync("ed25519")
      const i = `${b64({ alg: "EdDSA", kid: "ed1" })}.${b64({ exp: now() + 600, scope })}`
      return `${i}.${sign(null, Buffer.from(i), other.privateKey).toString("base64url")}`
    })()],
    ["malformed", "not.a.token"],
    ["oversized", "x".repeat(9000)],
  ]
}

describe("access control", () => {
  test("every operation: 401 without a usable token, 403 without the scope, the usual answer with it", { timeout: 60_000 }, async () => {
    const name = uniq("acl")
    const url = `${base}/v1/stream/${name}`
    const fork = uniq("acl-fork")
    // Each operation, with the scope that allows it and its usual status.
    const ops: Array<[string, string, (h: Record<string, string>) => Promise<Response>, number]> = [
      ["PUT", `create:${name}`, (h) => fetch(url, { method: "PUT", headers: { ...text, ...h }, body: "a" }), 201],
      ["POST", `append:${name}`, (h) => fetch(url, { method: "POST", headers: { ...text, ...h }, body: "b" }), 204],
      ["GET", `read:${name}`, (h) => fetch(`${url}?offset=-1`, { headers: h }), 200],
      ["long-poll", `read:${name}`, (h) => fetch(`${url}?offset=-1&live=long-poll`, { headers: h }), 200],
      ["HEAD", `read:${name}`, (h) => fetch(url, { method: "HEAD", headers: h }), 200],
      ["fork", `create:${fork} read:${name}`, (h) => fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers: { ...h, "stream-forked-from": `/v1/stream/${name}` } }), 201],
      ["SSE", `read:${name}`, async (h) => {
        const c = new AbortController()
        const r = await fetch(`${url}?offset=-1&live=sse`, { headers: h, signal: c.signal })
        if (r.status === 200) c.abort()
        return r
      }, 200],
      ["DELETE", `delete:${fork}`, (h) => fetch(`${base}/v1/stream/${fork}`, { method: "DELETE", headers: h }), 204],
    ]
    // HEAD answers carry no body: the reason is checked on the others.
    const code = async (op: string, r: Response) => (op === "HEAD" ? null : (await r.json()).error)
    for (const [op, scope, send, ok] of ops) {
      const none = await send({})
      expect(none.status, `${op} without a token`).toBe(401)
      expect(none.headers.get("www-authenticate")).toContain("Bearer")
      if (op !== "HEAD") expect((await code(op, none)).message).toBe("a bearer token is required")
      for (const [why, t] of badTokens(scope)) {
        const r = await send(bearer(t))
        expect(r.status, `${op} with a token: ${why}`).toBe(401)
        if (op !== "HEAD") expect((await code(op, r)).code).toBe("UNAUTHORIZED")
      }
      const wrongScope = await send(bearer(mint({ scope: "read:elsewhere/** append:elsewhere" })))
      expect(wrongScope.status, `${op}, scope for other streams`).toBe(403)
      if (op !== "HEAD") expect((await code(op, wrongScope)).code).toBe("FORBIDDEN")
      const r = await send(bearer(mint({ scope })))
      expect(r.status, `${op} with the right scope`).toBe(ok)
    }
    // The fork needed read on its source: create alone is not enough.
    const forkOnly = await fetch(`${base}/v1/stream/${uniq("acl-fork2")}`, {
      method: "PUT",
      headers: { ...bearer(mint({ scope: "create:**" })), "stream-forked-from": `/v1/stream/${name}` },
    })
    expect(forkOnly.status).toBe(403)
  })

  test("the LLM proxy and the demo model need the proxy scope; the answer needs read", { timeout: 30_000 }, async () => {
    const body = JSON.stringify({ messages: [{ role: "user", content: "hi" }] })
    const start = (h: Record<string, string>) => fetch(`${base}/v1/proxy`, { method: "POST", headers: { "content-type": "application/json", ...h }, body })
    expect((await start({})).status).toBe(401)
    expect((await start(bearer(mint({ scope: "create:** read:** append:**" })))).status).toBe(403)
    const ok = await start(bearer(mint({ scope: "proxy:proxy/**" })))
    expect(ok.status).toBe(201)
    const job = (await ok.json()) as { id: string; stream: string; cancel: string }
    expect((await fetch(job.cancel)).status, "the job view").toBe(401)
    expect((await fetch(job.cancel, { headers: bearer(mint({ scope: `proxy:proxy/${"0".repeat(32)}` })) })).status).toBe(403)
    expect((await fetch(job.cancel, { headers: bearer(mint({ scope: `proxy:proxy/${job.id}` })) })).status).toBe(200)
    expect((await fetch(`${job.stream}?offset=-1`)).status, "reading the answer").toBe(401)
    expect((await fetch(`${job.stream}?offset=-1`, { headers: bearer(mint({ scope: `read:proxy/${job.id}` })) })).status).toBe(200)
    const demo = (h: Record<string, string>) => fetch(`${base}/v1/demo/chat/completions`, { method: "POST", headers: h, body })
    expect((await demo({})).status).toBe(401)
    const answer = await demo(bearer(mint({ scope: "proxy:proxy/demo" })))
    expect(answer.status).toBe(200)
    expect(await answer.text()).toContain("data: [DONE]")
  })

  test("make token mints a token the worker accepts, with the scope and TTL asked for", async () => {
    const name = uniq("minted")
    const token = execFileSync(process.execPath, ["scripts/token.mjs"], {
      env: { ...process.env, AUTH_JWT_SECRET: `${NEW_SECRET} ${OLD_SECRET}`, SCOPE: `create:${name} read:${name}`, TTL: "120" },
      encoding: "utf8",
    }).trim()
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString())
    expect(claims.exp - claims.iat).toBe(120)
    const url = `${base}/v1/stream/${name}`
    expect((await fetch(url, { method: "PUT", headers: { ...text, ...bearer(token) } })).status).toBe(201)
    expect((await fetch(url, { method: "POST", headers: { ...text, ...bearer(token) }, body: "x" })).status).toBe(403)
  })

  test("HS256 with either secret during rotation, EdDSA and ES256 all verify", async () => {
    const name = uniq("algs")
    const url = `${base}/v1/stream/${name}`
    expect((await fetch(url, { method: "PUT", headers: { ...text, ...bearer(mint({ scope: all(name), alg: "HS256-old" })) }, body: "x" })).status).toBe(201)
    for (const alg of ["HS256", "HS256-old", "EdDSA", "ES256"] as const) {
      const r = await fetch(`${url}?offset=-1`, { headers: bearer(mint({ scope: `read:${name}`, alg })) })
      expect(r.status, alg).toBe(200)
      expect(await r.text()).toBe("x")
    }
  })

  test("a cached chunk is served only to authorized readers; ?token= works for SSE and is not part of the cache key", async () => {
    const name = uniq("acl-cache")
    const url = `${base}/v1/stream/${name}`
    const writer = bearer(mint({ scope: all(name) }))
    const put = await fetch(url, { method: "PUT", headers: { ...text, ...writer } })
    const start = put.headers.get("stream-next-offset")!
    for (let i = 0; i < 4; i++) await fetch(url, { method: "POST", headers: { ...text, ...writer }, body: `chunk-${i};` })
    const chunk = `${url}?offset=${start}`
    const reader = mint({ scope: `read:${name}` })
    const first = await fetch(chunk, { headers: bearer(reader) })
    expect(first.status).toBe(200)
    expect(first.headers.get("cache-control"), "a CDN must not share it").toMatch(/^private, max-age=/)
    await first.text()
    // Another authorized reader, with the token in the query: a HIT (the token is not in the key).
    await until(async () => {
      const r = await fetch(`${chunk}&token=${mint({ scope: `read:${name}` })}`)
      await r.text()
      return r.headers.get("x-cache") === "HIT"
    })
    const before = (await stats(base, name)).requests
    const anonymous = await fetch(chunk)
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get("x-cache")).toBe("BYPASS")
    const otherStream = await fetch(chunk, { headers: bearer(mint({ scope: "read:elsewhere" })) })
    expect(otherStream.status).toBe(403)
    expect((await stats(base, name)).requests, "refusals never reach the object").toBe(before)
    // A bare EventSource-style read: the token only in the query.
    const c = new AbortController()
    const sse = await fetch(`${url}?offset=-1&live=sse&token=${encodeURIComponent(reader)}`, { signal: c.signal })
    expect(sse.status).toBe(200)
    const rd = sse.body!.getReader()
    let got = ""
    while (!got.includes("chunk-3;")) got += new TextDecoder().decode((await rd.read()).value)
    c.abort()
    // The token is never accepted in the query of a write.
    const write = await fetch(`${url}?token=${encodeURIComponent(mint({ scope: all(name) }))}`, { method: "POST", headers: text, body: "x" })
    expect(write.status).toBe(401)
  })

  test("a multi-stream read needs read access to every stream it names", async () => {
    const [a, b] = [uniq("acl-multi-a"), uniq("acl-multi-b")]
    for (const s of [a, b]) {
      expect((await fetch(`${base}/v1/stream/${s}`, { method: "PUT", headers: { ...text, ...bearer(mint({ scope: all(s) })) } })).status).toBe(201)
    }
    const q = new URLSearchParams({ live: "sse" })
    q.append("s", `-1:${a}`)
    q.append("s", `-1:${b}`)
    const url = `${base}/v1/multi?${q}`
    expect((await fetch(url)).status).toBe(401)
    const onlyA = await fetch(url, { headers: bearer(mint({ scope: `read:${a}` })) })
    expect(onlyA.status).toBe(403)
    expect((await onlyA.json()).error.code).toBeTruthy()
    // Both, with the token in the query as a browser's EventSource sends it.
    const c = new AbortController()
    const ok = await fetch(`${url}&token=${encodeURIComponent(mint({ scope: `read:${a} read:${b}` }))}`, { signal: c.signal })
    expect(ok.status).toBe(200)
    const first = new TextDecoder().decode((await ok.body!.getReader().read()).value)
    expect(first).toContain(`"stream":"${a}"`)
    c.abort()
  })

  test("a WebSocket reader needs read access; a browser passes the token in the query", async () => {
    const name = uniq("acl-ws")
    const url = `${base}/v1/stream/${name}`
    await fetch(url, { method: "PUT", headers: { ...text, ...bearer(mint({ scope: all(name) })) }, body: "hi" })
    const open = (query: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`${url.replace(/^http/, "ws")}?offset=-1&live=ws${query}`)
        ws.addEventListener("message", (e) => {
          resolve(String(e.data))
          ws.close()
        })
        ws.addEventListener("error", () => resolve("refused"))
      })
    expect(await open("")).toBe("refused")
    expect(await open(`&token=${mint({ scope: "read:elsewhere" })}`)).toBe("refused")
    expect(JSON.parse(await open(`&token=${mint({ scope: `read:${name}` })}`)).data).toBe("hi")
    // What the refusal is: a 401 with its reason, before any upgrade.
    const handshake = [
      `GET /v1/stream/${name}?offset=-1&live=ws HTTP/1.1`,
      "Host: localhost",
      "Connection: Upgrade",
      "Upgrade: websocket",
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ].join("\r\n")
    const refused = await rawExchange(base, Buffer.from(`${handshake}\r\n\r\n`, "latin1"))
    expect(refused.status).toBe(401)
    expect(refused.body).toContain("a bearer token is required")
  })

  test("PUBLIC_READ streams are readable anonymously and stay public; writing them still needs a token", async () => {
    const name = `public/${uniq("news")}`
    const url = `${base}/v1/stream/${name}`
    const put = await fetch(url, { method: "PUT", headers: { ...text, ...bearer(mint({ scope: all(name) })) } })
    const start = put.headers.get("stream-next-offset")!
    for (let i = 0; i < 3; i++) await fetch(url, { method: "POST", headers: { ...text, ...bearer(mint({ scope: all(name) })) }, body: `item-${i};` })
    const r = await fetch(`${url}?offset=${start}`)
    expect(r.status).toBe(200)
    expect(r.headers.get("cache-control")).toMatch(/^public, max-age=/)
    expect((await fetch(url, { method: "POST", headers: text, body: "x" })).status).toBe(401)
  })

  test("a text/html stream read back is inert: sandboxed and an attachment", async () => {
    const name = uniq("html")
    const url = `${base}/v1/stream/${name}`
    const t = bearer(mint({ scope: all(name) }))
    await fetch(url, { method: "PUT", headers: { "content-type": "text/html", ...t }, body: "<script>alert(1)</script>" })
    const r = await fetch(`${url}?offset=-1`, { headers: t })
    expect(r.headers.get("content-type")).toBe("text/html")
    expect(r.headers.get("content-security-policy")).toBe("sandbox")
    expect(r.headers.get("content-disposition")).toBe("attachment")
    expect(r.headers.get("x-content-type-options")).toBe("nosniff")
  })

  test("past the rate limit: 429 with Retry-After; other clients are unaffected", async () => {
    const name = uniq("rate")
    const url = `${base}/v1/stream/${name}`
    const greedy = bearer(mint({ scope: all(name), sub: uniq("greedy") }))
    await fetch(url, { method: "PUT", headers: { ...text, ...greedy } })
    const statuses: Array<number> = []
    for (let i = 0; i < RATE_LIMIT + 5; i++) statuses.push((await fetch(url, { method: "HEAD", headers: greedy })).status)
    expect(statuses.slice(0, RATE_LIMIT - 1).every((s) => s === 200), "under the limit: unaffected").toBe(true)
    expect(statuses.at(-1)).toBe(429)
    const limited = await fetch(url, { method: "HEAD", headers: greedy })
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).toBe("60")
    expect((await fetch(url, { method: "HEAD", headers: bearer(mint({ scope: all(name) })) })).status).toBe(200)
  })

  test("the official TypeScript client works with a token in its headers option (consumer and idempotent producer)", async () => {
    const name = uniq("ts-client")
    const url = `${base}/v1/stream/${name}`
    const headers = bearer(mint({ scope: all(name) }))
    const handle = await DurableStream.create({ url, contentType: "application/json", headers })
    const producer = new IdempotentProducer(handle, "p1", { epoch: 0 })
    for (let i = 0; i < 20; i++) producer.append(JSON.stringify({ i }))
    await producer.flush()
    await producer.close()
    const res = await handle.stream<{ i: number }>({ offset: "-1", live: false })
    expect((await res.json()).map((m) => m.i)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    const denied = new DurableStream({ url, headers: bearer(mint({ scope: "read:elsewhere" })) })
    await expect(denied.stream({ offset: "-1", live: false })).rejects.toThrow()
  })
})

describe("a deployment without keys", () => {
  test("answers 401 with a message that says how to configure them", async () => {
    const { mf: bare, base: b } = await start({ vars: { AUTH_MODE: "jwt" } })
    try {
      const r = await fetch(`${b}/v1/stream/${uniq("nokeys")}`, { method: "PUT", headers: text })
      expect(r.status).toBe(401)
      expect((await r.json()).error.message).toContain("AUTH_JWT_SECRET")
    } finally {
      await bare.dispose()
    }
  })
})

describe("CORS_ORIGINS", () => {
  test("only listed origins may read responses; preflights follow the same list", async () => {
    const { mf: m, base: b } = await start({ vars: { CORS_ORIGINS: "https://app.example https://admin.example" } })
    try {
      const url = `${b}/v1/stream/${uniq("cors")}`
      await fetch(url, { method: "PUT", headers: text })
      const allowed = await fetch(url, { method: "HEAD", headers: { origin: "https://app.example" } })
      expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example")
      expect(allowed.headers.get("vary")).toContain("Origin")
      const other = await fetch(url, { method: "HEAD", headers: { origin: "https://evil.example" } })
      expect(other.headers.get("access-control-allow-origin")).toBeNull()
      const pre = await fetch(url, { method: "OPTIONS", headers: { origin: "https://admin.example", "access-control-request-method": "POST" } })
      expect(pre.status).toBe(204)
      expect(pre.headers.get("access-control-allow-origin")).toBe("https://admin.example")
      expect(pre.headers.get("access-control-allow-headers")).toContain("authorization")
    } finally {
      await m.dispose()
    }
  })
})
