/**
 * The durable LLM proxy (README.md, Resumable AI responses): POST /v1/proxy
 * answers 201 with the job's stream at once; its object appends the upstream's
 * tokens in order, once, and closes the stream with one `done` message. Against
 * the built-in demo model (no upstream) and a local fake OpenAI-compatible server:
 * an upstream that breaks mid-way, one that errors, cancel, a restart mid-run, bad
 * requests, and the key never leaving for anywhere but the upstream.
 */
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { start } from "./mf.mjs"
import { startFakeOpenAI, TOKENS } from "./fake-openai.mjs"

const KEY = "sk-test-4f9a1c7e2b"
const chat = (content: string) => JSON.stringify({ messages: [{ role: "user", content }] })

type Msg = { type: string; text?: string; status?: string; output?: string; reason?: string; usage?: unknown }

/** Starts a job and answers its stream URL and the raw text of the answer. */
async function startJob(base: string, content: string) {
  const r = await fetch(`${base}/v1/proxy`, { method: "POST", headers: { "content-type": "application/json" }, body: chat(content) })
  const text = await r.text()
  expect(r.status, text).toBe(201)
  const job = JSON.parse(text) as { id: string; stream: string; cancel: string }
  expect(r.headers.get("location")).toBe(job.stream)
  return { job, text, headers: [...r.headers].join("\n") }
}

/** Reads a stream from the start until it is closed (long-polls between). */
async function readClosed(url: string, timeoutMs = 30_000): Promise<{ messages: Msg[]; raw: string }> {
  const deadline = Date.now() + timeoutMs
  let offset = "-1"
  const messages: Msg[] = []
  let raw = ""
  while (Date.now() < deadline) {
    const r = await fetch(`${url}?offset=${offset}${offset === "-1" ? "" : "&live=long-poll"}`)
    if (r.status === 200) {
      const body = await r.text()
      raw += body
      messages.push(...(JSON.parse(body) as Msg[]))
    } else {
      await r.arrayBuffer()
    }
    offset = r.headers.get("stream-next-offset") ?? offset
    if (r.headers.get("stream-closed") === "true") return { messages, raw }
  }
  throw new Error(`${url} was not closed within ${timeoutMs} ms`)
}

function check(messages: Msg[]) {
  const done = messages.filter((m) => m.type === "done")
  expect(done.length, "exactly one done message, last").toBe(1)
  expect(messages[messages.length - 1].type).toBe("done")
  const text = messages.filter((m) => m.type === "delta").map((m) => m.text).join("")
  expect(done[0].output, "the final output is every delta, once").toBe(text)
  return { done: done[0], text }
}

describe("proxy: the demo model", () => {
  const base = inject("baseUrl")

  test("an answer streams in order and ends with the whole output and usage", { timeout: 30_000 }, async () => {
    const { job } = await startJob(base, "hello there")
    const { messages } = await readClosed(job.stream)
    const { done, text } = check(messages)
    expect(done.status).toBe("complete")
    expect(text.startsWith('You asked: "hello there". Durable Streams keeps every token')).toBe(true)
    expect(done.usage).toMatchObject({ completion_tokens: expect.any(Number) })
    expect(messages.filter((m) => m.type === "delta").length, "tokens arrive as they are generated").toBeGreaterThan(5)
    const view = await (await fetch(job.cancel)).json()
    expect(view).toMatchObject({ id: job.id, state: "finished", status: "complete" })
    const head = await fetch(job.stream, { method: "HEAD" })
    expect(head.headers.get("stream-ttl"), "PROXY_TTL_S: abandoned answers expire").toBe("3600")
    expect(head.headers.get("content-type")).toBe("application/json")
  })

  test("the demo page and its script are served at /", async () => {
    const page = await fetch(`${base}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get("content-type")).toMatch(/text\/html/)
    expect(await page.text()).toContain("Resumable AI answers")
    const script = await fetch(`${base}/app.js`)
    expect(script.status).toBe(200)
    expect(await script.text()).toContain("new EventSource")
    // Embedded in the Worker: the page's own policy, validators, no writes.
    expect(page.headers.get("content-security-policy")).toContain("default-src 'self'")
    expect(script.headers.get("content-type")).toMatch(/text\/javascript/)
    const etag = script.headers.get("etag")
    expect(etag).toMatch(/^"demo-[0-9a-f]{16}"$/)
    const again = await fetch(`${base}/app.js`, { headers: { "if-none-match": etag! } })
    expect(again.status).toBe(304)
    const post = await fetch(`${base}/`, { method: "POST", body: "x" })
    expect(post.status).toBe(405)
    expect(post.headers.get("allow")).toBe("GET, HEAD, OPTIONS")
    expect((await fetch(`${base}/app.jsx`)).status).toBe(404)
  })

  test("bad requests get 4xx with a reason", async () => {
    for (const body of ["nope", "[]", "{}", JSON.stringify({ messages: [] }), JSON.stringify({ messages: [{ content: "x" }] })]) {
      const r = await fetch(`${base}/v1/proxy`, { method: "POST", headers: { "content-type": "application/json" }, body })
      expect(r.status, body).toBe(400)
      expect((await r.json()).error.code).toBe("INVALID_REQUEST")
    }
    const big = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(300 * 1024) }] })
    expect((await fetch(`${base}/v1/proxy`, { method: "POST", body: big })).status).toBe(413)
    const get = await fetch(`${base}/v1/proxy`)
    expect(get.status).toBe(405)
    expect(get.headers.get("allow")).toBe("POST, OPTIONS")
    const put = await fetch(`${base}/v1/proxy/${"0".repeat(32)}`, { method: "PUT", body: "x" })
    expect(put.status).toBe(405)
    expect(put.headers.get("allow")).toBe("GET, DELETE, OPTIONS")
    const demoGet = await fetch(`${base}/v1/demo/chat/completions`)
    expect(demoGet.status).toBe(405)
    expect(demoGet.headers.get("allow")).toBe("POST, OPTIONS")
    expect((await fetch(`${base}/v1/proxy/${"0".repeat(32)}`)).status).toBe(404)
    expect((await fetch(`${base}/v1/proxy/not-an-id`)).status).toBe(404)
  })

  test("cancel stops the answer and closes the stream as cancelled", { timeout: 30_000 }, async () => {
    const { job } = await startJob(base, "a long question")
    const first = await fetch(`${job.stream}?offset=-1`)
    await first.arrayBuffer()
    const r = await fetch(job.cancel, { method: "DELETE" })
    expect(r.status).toBe(202)
    const { messages } = await readClosed(job.stream)
    const { done } = check(messages)
    expect(["cancelled", "complete"]).toContain(done.status)
    if (done.status === "cancelled") expect(done.reason).toMatch(/cancel/)
  })
})

describe("proxy: an OpenAI-compatible upstream", () => {
  let fake: Awaited<ReturnType<typeof startFakeOpenAI>>
  let mf: { dispose(): Promise<void> }
  let base = ""

  beforeAll(async () => {
    fake = await startFakeOpenAI({ key: KEY })
    const s = await start({
      vars: { PROXY_UPSTREAM_URL: fake.url, PROXY_UPSTREAM_HOSTS: fake.host, PROXY_UPSTREAM_KEY: KEY, PROXY_DEV_LOOPBACK: "1", PROXY_MODEL: "gpt-test" },
    })
    mf = s.mf
    base = s.base
  })
  afterAll(async () => {
    await mf?.dispose()
    await fake?.close()
  })

  test("tokens arrive in order, once; the final message holds the full output; the key goes only upstream", { timeout: 30_000 }, async () => {
    const started = await startJob(base, "tell me a story")
    const { messages, raw } = await readClosed(started.job.stream)
    const { done, text } = check(messages)
    expect(done.status).toBe("complete")
    expect(text).toBe(TOKENS.join(""))
    expect(done.usage).toMatchObject({ completion_tokens: TOKENS.length })
    expect(fake.seen.auth.at(-1)).toBe(`Bearer ${KEY}`)
    const sent = fake.seen.bodies.at(-1)
    expect(sent).toMatchObject({ model: "gpt-test", stream: true, stream_options: { include_usage: true } })
    const view = await (await fetch(started.job.cancel)).text()
    for (const seen of [raw, started.text, started.headers, view]) expect(seen).not.toContain(KEY)
    expect((await fetch(`${base}/v1/demo/chat/completions`, { method: "POST", body: chat("x") })).status, "the demo model is off").toBe(404)
  })

  test("an upstream that breaks mid-way closes the stream as interrupted, with what arrived", { timeout: 30_000 }, async () => {
    const { job } = await startJob(base, "fail after 3")
    const { messages } = await readClosed(job.stream)
    const { done, text } = check(messages)
    expect(done.status).toBe("interrupted")
    expect(text).toBe(TOKENS.slice(0, 3).join(""))
    expect(done.reason).toMatch(/ended before it finished/)
  })

  test("an upstream error fails the answer with a reason that never carries the key", { timeout: 30_000 }, async () => {
    const { job } = await startJob(base, "error echo")
    const { messages, raw } = await readClosed(job.stream)
    const { done } = check(messages)
    expect(done.status).toBe("failed")
    expect(done.reason).toMatch(/400/)
    expect(raw).not.toContain(KEY)
    expect(raw).toContain("[redacted]")
  })

  test("cancel aborts the upstream call", { timeout: 30_000 }, async () => {
    const aborted = fake.seen.aborted
    const { job } = await startJob(base, "slow")
    // Wait for the first token, then cancel.
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${job.stream}?offset=-1`)
      if ((await r.json()).length > 0) break
    }
    expect((await fetch(job.cancel, { method: "DELETE" })).status).toBe(202)
    const { messages } = await readClosed(job.stream)
    const { done, text } = check(messages)
    expect(done.status).toBe("cancelled")
    expect(text.length).toBeLessThan(TOKENS.join("").length)
    const deadline = Date.now() + 5_000
    while (fake.seen.aborted === aborted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(fake.seen.aborted, "the upstream saw its connection closed").toBe(aborted + 1)
  })

  test("an upstream not in PROXY_UPSTREAM_HOSTS is never called", async () => {
    const other = await start({ vars: { PROXY_UPSTREAM_URL: fake.url, PROXY_UPSTREAM_HOSTS: "api.example.com", PROXY_DEV_LOOPBACK: "1" } })
    try {
      const before = fake.seen.requests
      const r = await fetch(`${other.base}/v1/proxy`, { method: "POST", body: chat("hi") })
      expect(r.status).toBe(503)
      expect((await r.json()).error.code).toBe("PROXY_MISCONFIGURED")
      expect(fake.seen.requests).toBe(before)
    } finally {
      await other.mf.dispose()
    }
  })
})

describe("proxy: a restart mid-generation", () => {
  test("the stream ends with the interruption record, never truncated silently or duplicated", { timeout: 60_000 }, async () => {
    const fake = await startFakeOpenAI({ key: KEY })
    const dir = mkdtempSync(path.join(tmpdir(), "ds-proxy-"))
    const vars = { PROXY_UPSTREAM_URL: fake.url, PROXY_UPSTREAM_HOSTS: fake.host, PROXY_UPSTREAM_KEY: KEY, PROXY_DEV_LOOPBACK: "1" }
    try {
      const first = await start({ persistDir: dir, vars })
      const { job } = await startJob(first.base, "slow")
      for (let i = 0; i < 200; i++) {
        const r = await fetch(`${job.stream}?offset=-1`)
        if ((await r.json()).length >= 2) break
      }
      await first.mf.dispose()
      const second = await start({ persistDir: dir, vars })
      try {
        const stream = job.stream.replace(first.base, second.base)
        const { messages } = await readClosed(stream, 40_000)
        const { done, text } = check(messages)
        expect(done.status).toBe("interrupted")
        expect(done.reason).toMatch(/restarted/)
        expect(TOKENS.join("").startsWith(text), "a prefix of the answer, no token twice").toBe(true)
        expect(text.length).toBeGreaterThan(0)
      } finally {
        await second.mf.dispose()
      }
    } finally {
      await fake.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
