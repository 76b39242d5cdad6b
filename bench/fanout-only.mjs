// A quick fan-out probe for profiling work: ours only, 100 long-poll then 100 SSE readers.
import { ours } from "./servers.mjs"
import { fanOut } from "./workloads.mjs"

const srv = await ours()
try {
  for (const kind of ["long-poll", "sse"]) {
    const r = await fanOut(srv, { kind, readers: 100, messages: 100, intervalMs: 50 })
    console.log(`${kind}: p50 ${r.p50_ms.toFixed(1)} ms p99 ${r.p99_ms.toFixed(1)} ms (${r.deliveries})`)
  }
} finally {
  await srv.stop()
}
