/**
 * One way to start the built worker under Miniflare (bare workerd), with the
 * bindings read from wrangler.toml (so they are written once) and the test
 * overrides below: a short long-poll timeout and SSE lifetime.
 */
import { Miniflare } from "miniflare"
import { unstable_getMiniflareWorkerOptions } from "wrangler"
import { fileURLToPath } from "node:url"
import path from "node:path"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** Configuration the tests run with (README.md, Configuration). */
export const TEST_VARS: Record<string, string> = {
  LONG_POLL_TIMEOUT_MS: "500",
  SSE_MAX_LIFETIME_MS: "3000",
  SSE_KEEPALIVE_MS: "1000",
  TEST_ROUTES: "1",
}

export interface StartOptions {
  /** Directory for Durable Object storage; in memory when absent. */
  persistDir?: string
  vars?: Record<string, string>
}

export function createMiniflare(opts: StartOptions = {}): Miniflare {
  const { workerOptions, main } = unstable_getMiniflareWorkerOptions(path.join(ROOT, "wrangler.toml"))
  return new Miniflare({
    ...workerOptions,
    modules: true,
    scriptPath: main,
    bindings: { ...workerOptions.bindings, ...TEST_VARS, ...opts.vars },
    durableObjectsPersist: opts.persistDir ?? false,
    cache: true,
    host: "127.0.0.1",
    port: 0,
  } as ConstructorParameters<typeof Miniflare>[0])
}

/** Starts Miniflare and returns it with its loopback origin. */
export async function start(opts: StartOptions = {}): Promise<{ mf: Miniflare; base: string }> {
  const mf = createMiniflare(opts)
  const url = await mf.ready
  return { mf, base: url.origin }
}
