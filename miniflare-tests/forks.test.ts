/**
 * Forks across Durable Objects (PROTOCOL.md §4.2): the failure paths of the
 * protocol between a fork's object and its source's (src/cloudflare/forks.rs),
 * driven by the test-only fault switch.
 */
import { describe, expect, inject, test } from "vitest"
import { stats, uniq, until } from "./helpers"

const base = inject("baseUrl")
const text = { "content-type": "text/plain" }

async function fault(name: string, query: string) {
  const r = await fetch(`${base}/__test/stream/${name}?${query}`, { method: "POST" })
  expect(r.status).toBe(200)
}

describe("fork protocol failure paths", () => {
  test("a fork stopped after the source recorded it leaks no reference", { timeout: 20_000 }, async () => {
    const src = uniq("fp-src")
    const fork = uniq("fp-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: text, body: "inherited" })
    await fault(fork, "fault=after-acquire")
    const crashed = await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${src}` } })
    expect(crashed.status).toBe(500)
    expect((await stats(base, src)).refs).toBe(1)
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "HEAD" })).status).toBe(404)
    // The fork's alarm gives up on the creation after FORK_GRACE_MS and releases it.
    await until(async () => (await stats(base, src)).refs === 0)
    expect((await stats(base, fork)).outbox).toBe(0)
    // With no reference left, deleting the source removes it for good.
    expect((await fetch(`${base}/v1/stream/${src}`, { method: "DELETE" })).status).toBe(204)
    expect((await fetch(`${base}/v1/stream/${src}`, { method: "HEAD" })).status).toBe(404)
  })

  test("a retried fork creation after a crash succeeds and reads the source", { timeout: 20_000 }, async () => {
    const src = uniq("fp-src")
    const fork = uniq("fp-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: text, body: "abc" })
    await fault(fork, "fault=after-acquire")
    const headers = { "stream-forked-from": `/v1/stream/${src}` }
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers })).status).toBe(500)
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers })).status).toBe(201)
    expect(await (await fetch(`${base}/v1/stream/${fork}`)).text()).toBe("abc")
    // The crashed attempt's reference goes; the real fork's stays.
    await until(async () => (await stats(base, src)).refs === 1 && (await stats(base, fork)).outbox === 0)
  })

  test("an undelivered release is retried, and the source keeps its data until then", { timeout: 20_000 }, async () => {
    const src = uniq("fp-src")
    const fork = uniq("fp-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: text, body: "kept" })
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "PUT", headers: { "stream-forked-from": `/v1/stream/${src}` } })).status).toBe(201)
    expect((await fetch(`${base}/v1/stream/${src}`, { method: "DELETE" })).status).toBe(204)
    expect((await fetch(`${base}/v1/stream/${src}`, { method: "HEAD" })).status).toBe(410)
    await fault(fork, "fault=release-fails&count=3")
    expect((await fetch(`${base}/v1/stream/${fork}`, { method: "DELETE" })).status).toBe(204)
    const s = await stats(base, src)
    expect(s.softDeleted).toBe(true)
    expect(s.refs).toBe(1)
    expect(s.chunkRows).toBe(1)
    expect((await stats(base, fork)).outbox).toBe(1)
    // Retried every FORK_RETRY_MS by the fork's alarm until delivered; then the cascade drops the source.
    await until(async () => !(await stats(base, src)).exists)
    expect((await stats(base, fork)).outbox).toBe(0)
    expect((await fetch(`${base}/v1/stream/${src}`, { method: "HEAD" })).status).toBe(404)
  })

  test("a refused fork leaves nothing behind on either side", async () => {
    const src = uniq("fp-src")
    const fork = uniq("fp-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: text, body: "x" })
    const r = await fetch(`${base}/v1/stream/${fork}`, {
      method: "PUT",
      headers: { "stream-forked-from": `/v1/stream/${src}`, "content-type": "application/json" },
    })
    expect(r.status).toBe(409)
    expect((await stats(base, src)).refs).toBe(0)
    expect((await stats(base, fork)).outbox).toBe(0)
    expect((await stats(base, fork)).exists).toBe(false)
  })

  test("a fork's invalid initial body releases the reference it took", async () => {
    const src = uniq("fp-src")
    const fork = uniq("fp-fork")
    await fetch(`${base}/v1/stream/${src}`, { method: "PUT", headers: { "content-type": "application/json" }, body: "[1]" })
    const r = await fetch(`${base}/v1/stream/${fork}`, {
      method: "PUT",
      headers: { "stream-forked-from": `/v1/stream/${src}`, "content-type": "application/json" },
      body: "{not json",
    })
    expect(r.status).toBe(400)
    await until(async () => (await stats(base, src)).refs === 0)
    expect((await stats(base, fork)).exists).toBe(false)
  })

  test("reads stitch a three-level chain into one JSON array", async () => {
    const a = uniq("chain-a")
    const b = uniq("chain-b")
    const c = uniq("chain-c")
    const json = { "content-type": "application/json" }
    await fetch(`${base}/v1/stream/${a}`, { method: "PUT", headers: json, body: "[1,2]" })
    const forkOf = (s: string) => ({ ...json, "stream-forked-from": `/v1/stream/${s}` })
    expect((await fetch(`${base}/v1/stream/${b}`, { method: "PUT", headers: forkOf(a), body: "[3]" })).status).toBe(201)
    await fetch(`${base}/v1/stream/${a}`, { method: "POST", headers: json, body: "[99]" })
    expect((await fetch(`${base}/v1/stream/${c}`, { method: "PUT", headers: forkOf(b), body: "[4]" })).status).toBe(201)
    expect(await (await fetch(`${base}/v1/stream/${c}`)).json()).toEqual([1, 2, 3, 4])
    expect(await (await fetch(`${base}/v1/stream/${a}`)).json()).toEqual([1, 2, 99])
  })
})
