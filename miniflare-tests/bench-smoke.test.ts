/**
 * The bench smoke pass (`make test`) judges that every workload produced a
 * number, never the number's size: a memory figure that came out negative on a
 * busy machine once failed a clean-clone `make test`.
 */
import { expect, test } from "vitest"
import { missingFigures } from "../bench/smoke-check.mjs"

test("a figure that is a number is present, whatever its sign; a missing or failed workload is not", () => {
  const rows: Array<[string, (r: { idle_sse?: { bytes_per_reader: number } }) => number]> = [
    ["KiB per idle SSE reader", (r) => r.idle_sse!.bytes_per_reader / 1024],
  ]
  const names = ["a", "b", "c", "d"]
  const results = {
    a: { idle_sse: { bytes_per_reader: -133_120 } },
    b: { idle_sse: { bytes_per_reader: 10_240 } },
    c: { idle_sse: { bytes_per_reader: Number.NaN } },
    d: {},
  }
  expect(missingFigures(rows, names, results)).toEqual(["KiB per idle SSE reader / c", "KiB per idle SSE reader / d"])
})
