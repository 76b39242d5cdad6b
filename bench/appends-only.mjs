// A quick append-rate probe for profiling work: ours only, 16 writers on 16
// streams and on one stream. `node bench/appends-only.mjs [ms]`
import { ours } from "./servers.mjs"
import { appends } from "./workloads.mjs"

const ms = Number(process.argv[2] ?? 4000)
const srv = await ours()
try {
  const uniq = (p) => `${p}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
  const spread = await appends(srv, { writers: 16, pathFor: (i) => `/v1/stream/${uniq(`a${i}`)}`, durationMs: ms, bodyBytes: 100 })
  const hot = `/v1/stream/${uniq("hot")}`
  const one = await appends(srv, { writers: 16, pathFor: () => hot, durationMs: ms, bodyBytes: 100 })
  const f = (r) => `${r.ops_per_s.toFixed(0)}/s p50 ${r.p50_ms.toFixed(1)} p99 ${r.p99_ms.toFixed(1)}`
  console.log(`16 streams: ${f(spread)} | one stream: ${f(one)}`)
} finally {
  await srv.stop()
}
