// `make token`: prints an HS256 token signed with the first secret of
// AUTH_JWT_SECRET, for trying access control (README.md, Access control).
//   SCOPE  space-separated OP:PATTERN entries (default "read:**")
//   TTL    seconds until it expires (default 3600)
//   SUB    its subject (default "dev"), the rate-limit key
import { createHmac } from "node:crypto"

const secret = (process.env.AUTH_JWT_SECRET ?? "").split(/[\s,]+/).find(Boolean)
if (!secret) {
  console.error("make token: set AUTH_JWT_SECRET in the environment (the secret the worker verifies with)")
  process.exit(2)
}
const ttl = Number(process.env.TTL ?? 3600)
if (!Number.isInteger(ttl) || ttl <= 0) {
  console.error("make token: TTL must be a positive number of seconds")
  process.exit(2)
}
const now = Math.floor(Date.now() / 1000)
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url")
const claims = { sub: process.env.SUB || "dev", iat: now, exp: now + ttl, scope: process.env.SCOPE || "read:**" }
const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`
console.log(`${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`)
