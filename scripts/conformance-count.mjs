// Prints the official conformance suite's own count from vitest's JSON report.
import { readFileSync } from "node:fs"

const report = JSON.parse(readFileSync(process.argv[2], "utf8"))
const file = report.testResults.find((t) => t.name.endsWith("conformance.test.ts"))
if (!file) {
  console.log("conformance: not run")
} else {
  const count = (s) => file.assertionResults.filter((a) => a.status === s).length
  console.log(
    `conformance: ${count("passed")} passed, ${count("failed")} failed, ${count("skipped") + count("pending") + count("todo")} not run (of ${file.assertionResults.length})`
  )
}
