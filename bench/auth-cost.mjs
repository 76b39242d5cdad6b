// The cost of checking a token in the Worker: HEAD requests to one stream of
// a worker in AUTH_MODE=jwt, interleaved: anonymous (a PUBLIC_READ stream:
// the same path through access control, no signature) and with an HS256,
// EdDSA or ES256 token. The difference of the means is the verification's
// cost per request, as a client sees it (one connection, sequential).
import { createHmac, generateKeyPairSync, sign } from "node:crypto"
import { Pool } from "undici"
import { start } from "../miniflare-tests/mf.mjs"

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url")

export async function authCost({ rounds }) {
  const ed = generateKeyPairSync("ed25519")
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" })
  const edJwk = ed.publicKey.export({ format: "jwk" })
  const ecJwk = ec.publicKey.export({ format: "jwk" })
  const secret = "bench-secret-0123456789"
  const jwks = JSON.stringify({
    keys: [
      { kty: "OKP", crv: "Ed25519", x: edJwk.x, kid: "ed" },
      { kty: "EC", crv: "P-256", x: ecJwk.x, y: ecJwk.y, kid: "ec" },
    ],
  })
  const { mf, base } = await start({
    testVars: false,
    vars: { AUTH_MODE: "jwt", AUTH_JWT_SECRET: secret, AUTH_JWKS: jwks, PUBLIC_READ: "public/**" },
  })
  const pool = new Pool(base, { connections: 1 })
  try {
    const path = `/v1/stream/public/auth-cost-${Date.now()}`
    const exp = Math.floor(Date.now() / 1000) + 3600
    const mint = (alg, kid) => {
      const input = `${b64({ alg, kid })}.${b64({ exp, scope: "*:public/**", sub: "bench" })}`
      const sig =
        alg === "HS256"
          ? createHmac("sha256", secret).update(input).digest()
          : alg === "EdDSA"
            ? sign(null, Buffer.from(input), ed.privateKey)
            : sign("sha256", Buffer.from(input), { key: ec.privateKey, dsaEncoding: "ieee-p1363" })
      return `${input}.${sig.toString("base64url")}`
    }
    const tokens = { HS256: mint("HS256"), EdDSA: mint("EdDSA", "ed"), ES256: mint("ES256", "ec") }
    const put = await pool.request({ method: "PUT", path, headers: { "content-type": "text/plain", authorization: `Bearer ${tokens.HS256}` } })
    await put.body.dump()
    if (put.statusCode !== 201) throw new Error(`auth cost: create ${put.statusCode}`)
    const variants = { anonymous: {}, ...Object.fromEntries(Object.entries(tokens).map(([k, t]) => [k, { authorization: `Bearer ${t}` }])) }
    const total = Object.fromEntries(Object.keys(variants).map((k) => [k, 0]))
    for (let i = 0; i < rounds + 20; i++) {
      for (const [name, headers] of Object.entries(variants)) {
        const s = performance.now()
        const r = await pool.request({ method: "HEAD", path, headers })
        await r.body.dump()
        if (r.statusCode !== 200) throw new Error(`auth cost: ${name} ${r.statusCode}`)
        if (i >= 20) total[name] += performance.now() - s // the first rounds warm up
      }
    }
    const mean = (k) => (1000 * total[k]) / rounds
    return {
      anonymous_us: mean("anonymous"),
      hs256_us: mean("HS256") - mean("anonymous"),
      eddsa_us: mean("EdDSA") - mean("anonymous"),
      es256_us: mean("ES256") - mean("anonymous"),
    }
  } finally {
    await pool.close()
    await mf.dispose()
  }
}
