import { defineConfig } from "vitest/config"

/**
 * Tests of behaviour not built yet, excluded by name. Each later issue removes
 * its entries; the list must end empty.
 */
export const NOT_BUILT_YET: Array<string> = []

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

export default defineConfig({
  test: {
    include: ["miniflare-tests/**/*.test.ts"],
    globalSetup: ["miniflare-tests/global-setup.ts"],
    testNamePattern:
      NOT_BUILT_YET.length > 0 ? new RegExp(`^(?!.*(${NOT_BUILT_YET.map(escape).join("|")}))`) : undefined,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
})
