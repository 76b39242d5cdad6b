/** One shared worker for every spec file; each file gets its origin via inject("baseUrl"). */
import type { TestProject } from "vitest/node"
import { start } from "./mf.mjs"

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string
  }
}

export default async function setup(project: TestProject) {
  const { mf, base } = await start()
  project.provide("baseUrl", base)
  return async () => {
    await mf.dispose()
  }
}
