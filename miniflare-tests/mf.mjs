/**
 * One way to start the built worker under Miniflare (bare workerd), with the
 * bindings read from wrangler.toml (so they are written once) and the test
 * overrides below: a short long-poll timeout, SSE lifetime and keep-alive.
 * Shared by the vitest specs and the benchmarks in bench/.
 */
import { Log, LogLevel, Miniflare } from "miniflare"
import { unstable_getMiniflareWorkerOptions } from "wrangler"
import { fileURLToPath } from "node:url"
import path from "node:path"
import { randomBytes } from "node:crypto"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** Configuration the tests run with (README.md, Configuration). */
export const TEST_VARS = {
  AUTH_MODE: "open",
  LONG_POLL_TIMEOUT_MS: "500",
  SSE_MAX_LIFETIME_MS: "3000",
  SSE_KEEPALIVE_MS: "1000",
  FORK_GRACE_MS: "2000",
  FORK_RETRY_MS: "200",
  TEST_ROUTES: "1",
  // A throwaway webhook signing key (an Ed25519 seed) per test process, and
  // webhooks to loopback receivers allowed (README.md, Subscriptions).
  SUBSCRIPTION_SIGNING_KEY: randomBytes(32).toString("base64url"),
  SUBSCRIPTION_DEV_LOOPBACK: "1",
  // The demo model at test pace (README.md, Resumable AI responses).
  PROXY_DEMO_TOKEN_MS: "10",
}

/**
 * @param {{ persistDir?: string, vars?: Record<string, string>, testVars?: boolean, ratelimits?: object, port?: number }} [opts]
 *   persistDir: Durable Object storage directory (in memory when absent);
 *   testVars: apply TEST_VARS (default true; benchmarks use wrangler.toml's
 *     values, in AUTH_MODE=open);
 *   ratelimits: the rate-limit bindings (default none: only the access tests
 *     exercise the limit);
 *   port: the loopback port (default: any free one).
 */
export function createMiniflare(opts = {}) {
  const { workerOptions, main } = unstable_getMiniflareWorkerOptions(path.join(ROOT, "wrangler.toml"))
  const testVars = opts.testVars === false ? { TEST_ROUTES: "1", AUTH_MODE: "open" } : TEST_VARS
  return new Miniflare({
    ...workerOptions,
    modules: true,
    scriptPath: main,
    bindings: { ...workerOptions.bindings, ...testVars, ...opts.vars },
    ratelimits: opts.ratelimits ?? {},
    durableObjectsPersist: opts.persistDir ?? false,
    cache: true,
    host: "127.0.0.1",
    port: opts.port ?? 0,
    // MF_VERBOSE=1: workerd's own verbose logging (isolate resets, limits).
    verbose: process.env.MF_VERBOSE === "1",
    // MF_LOG=debug (or info, warn, error) shows the worker's and workerd's logs.
    ...(process.env.MF_LOG ? { log: new Log(LogLevel[process.env.MF_LOG.toUpperCase()] ?? LogLevel.INFO) } : {}),
  })
}

/** Starts Miniflare and returns it with its loopback origin. */
export async function start(opts = {}) {
  const mf = createMiniflare(opts)
  const url = await mf.ready
  return { mf, base: url.origin }
}
