/** The official conformance suite (@durable-streams/server-conformance-tests 0.3.6) against the built worker. */
import { inject } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"
import { TEST_VARS } from "./mf.mjs"

runConformanceTests({
  baseUrl: inject("baseUrl"),
  longPollTimeoutMs: Number(TEST_VARS.LONG_POLL_TIMEOUT_MS),
  // The opt-in "Reserved subscription APIs" group (PROTOCOL.md §6, §7).
  subscriptions: true,
})
