// What `make test`'s bench smoke pass judges: that every workload ran and
// produced a number for every server. Not the number's size: on a shared
// 2-core machine it moves with the machine's mood (a memory delta can even
// come out negative), so judging it would make the pass fail by chance.

/**
 * @param {Array<[string, (r: object) => number]>} rows  table rows: label and getter
 * @param {Array<string>} names  server names
 * @param {Record<string, object>} results  per-server results
 * @returns {Array<string>} the "row / server" figures that are missing
 */
export function missingFigures(rows, names, results) {
  return rows.flatMap(([label, get]) =>
    names.filter((n) => {
      try {
        return !Number.isFinite(get(results[n]))
      } catch {
        return true
      }
    }).map((n) => `${label} / ${n}`)
  )
}
