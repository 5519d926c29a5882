import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

/**
 * How tests start a package's bin as a real process: plain `node <package>/dist/bin.js`, as users run it.
 * Not through tap's TypeScript loader: that costs 3-5 s per process on a quiet 2-core box and over 20 s on a
 * loaded one, which made process tests slow and flaky. `npm test` builds first (tsc -b); a test run after an edit
 * without a build fails here with the command to run, rather than testing stale code.
 */
export function builtBin(packageDir: string): string {
  const bin = join(packageDir, 'dist', 'bin.js')
  const stale = [packageDir, resolve(packageDir, '..', 'shared')].some((dir) => newestMtime(join(dir, 'src')) > buildTime(dir))
  if (!existsSync(bin) || stale) {
    throw new Error(`${bin} is missing or older than its sources: run \`npm run build\` (tsc -b) at the repository root first`)
  }
  return bin
}

/** The environment for a spawned bin: the test's own, without NODE_OPTIONS (tap's coverage hook, 2 s per process). */
export function childEnv(env: NodeJS.ProcessEnv, drop: (name: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && name !== 'NODE_OPTIONS' && !drop(name)) out[name] = value
  }
  return out
}

/** tsc -b rewrites (or touches) the build info whenever it brings a project up to date. */
function buildTime(packageDir: string): number {
  const info = join(packageDir, 'tsconfig.tsbuildinfo')
  return existsSync(info) ? statSync(info).mtimeMs : 0
}

/** Only TypeScript: other files (the dashboard page) are not compiled, so a build would not make them older. */
function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}
