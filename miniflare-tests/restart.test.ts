/**
 * Durability across a restart: dispose Miniflare and start it again on the
 * same persisted directory; every acknowledged byte and the producer state
 * are still there (PROTOCOL.md §4, §5.2.1 atomicity).
 */
import { afterAll, describe, expect, test } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { start } from "./mf.mjs"
import { readAll, sha256 } from "./helpers"

const dir = mkdtempSync(path.join(tmpdir(), "ds-restart-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("restart", () => {
  test("acknowledged data, closure and producer state survive a restart", { timeout: 60_000 }, async () => {
    const first = await start({ persistDir: dir })
    const url = `${first.base}/v1/stream/durable/log`
    const closedUrl = `${first.base}/v1/stream/durable/closed`
    const acked: Array<Uint8Array> = []
    let tail = ""
    try {
      expect((await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" } })).status).toBe(201)
      for (let seq = 0; seq < 20; seq++) {
        const body = new TextEncoder().encode(`message ${seq};`)
        const r = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/octet-stream", "producer-id": "writer", "producer-epoch": "3", "producer-seq": String(seq) },
          body,
        })
        expect(r.status).toBe(200)
        acked.push(body)
        tail = r.headers.get("stream-next-offset")!
      }
      await fetch(closedUrl, { method: "PUT", headers: { "content-type": "text/plain", "stream-closed": "true" }, body: "final" })
    } finally {
      await first.mf.dispose()
    }

    const second = await start({ persistDir: dir })
    try {
      const url2 = `${second.base}/v1/stream/durable/log`
      const { body, next } = await readAll(url2)
      expect(sha256(body)).toBe(sha256(Buffer.concat(acked)))
      expect(next).toBe(tail)

      const retry = await fetch(url2, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "producer-id": "writer", "producer-epoch": "3", "producer-seq": "19" },
        body: "message 19;",
      })
      expect(retry.status).toBe(204)
      expect(retry.headers.get("producer-seq")).toBe("19")
      const nextSeq = await fetch(url2, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "producer-id": "writer", "producer-epoch": "3", "producer-seq": "20" },
        body: "message 20;",
      })
      expect(nextSeq.status).toBe(200)
      const stale = await fetch(url2, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "producer-id": "writer", "producer-epoch": "2", "producer-seq": "0" },
        body: "zombie",
      })
      expect(stale.status).toBe(403)

      const head = await fetch(`${second.base}/v1/stream/durable/closed`, { method: "HEAD" })
      expect(head.headers.get("stream-closed")).toBe("true")
      expect(await (await fetch(`${second.base}/v1/stream/durable/closed`)).text()).toBe("final")
    } finally {
      await second.mf.dispose()
    }
  })
})
