#!/usr/bin/env node
// The file npm links as `tornado-agent`. It is in the repository, not built, so that `npm ci` in a checkout links it
// (npm links no bin whose file is missing, and dist/ does not exist before `npm run build`).
import { existsSync } from 'node:fs'

const built = new URL('../dist/bin.js', import.meta.url)
if (!existsSync(built)) {
  process.stderr.write('tornado-agent: not built yet: run `npm run build` at the repository root\n')
  process.exit(1)
}
await import(built.href)
