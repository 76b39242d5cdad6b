/**
 * A local webhook receiver for the subscription tests (PROTOCOL.md §7.1):
 * records every request (body, raw body, signature, arrival time) and
 * answers each with what `respond(n)` says for the n-th request (1-based):
 * `{ status, body }`.
 */
import { createServer } from "node:http"
import { createPublicKey, verify } from "node:crypto"

export async function receiver(respond = () => ({ status: 200, body: {} })) {
  const received = []
  const server = createServer((req, res) => {
    const chunks = []
    req.on("data", (c) => chunks.push(c))
    req.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8")
      received.push({ body: JSON.parse(rawBody), rawBody, signature: req.headers["webhook-signature"] ?? null, at: Date.now() })
      const { status, body } = respond(received.length)
      res.writeHead(status, { "content-type": "application/json" })
      res.end(JSON.stringify(body ?? {}))
    })
  })
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address()
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Whether a `Webhook-Signature` verifies against a JWK Set (§7.1, §12.10). */
export function verifies(rawBody, header, jwks) {
  const m = /^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/.exec(header ?? "")
  if (!m) return false
  const [, t, kid, sig] = m
  const key = jwks.keys.find((k) => k.kid === kid)
  if (!key) return false
  const publicKey = createPublicKey({ key, format: "jwk" })
  return verify(null, Buffer.from(`${t}.${rawBody}`), publicKey, Buffer.from(sig, "base64url"))
}
