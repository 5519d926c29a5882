import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { builtBin, childEnv } from '@tornado/shared/testing'
import type { Test } from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))
const OUR_VARIABLES = /^(REDIS_.*|TORNADO_.*|STALE_AFTER_MS|PORT|HOST|LOG_LEVEL|AGENT_.*|HEARTBEAT_.*)$/

export interface Running {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

/** Runs a package's built bin (dist/bin.js) as users run it, with only the given variables of ours set. */
export function startProcess(t: Test, bin: 'api' | 'agent', env: Record<string, string>, args: string[] = []): Running {
  return watchProcess(t, process.execPath, [builtBin(join(root, 'packages', bin)), ...args], {
    ...childEnv(process.env, (name) => OUR_VARIABLES.test(name)),
    ...env,
  })
}

/** Spawns a command with exactly `env`, collects its stdout and stderr, and SIGKILLs it in teardown if still running. */
export function watchProcess(t: Test, command: string, args: string[], env: Record<string, string | undefined>): Running {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return { child, output: () => output, exited }
}

export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`)
}

export async function listeningUrl(api: Running): Promise<string> {
  return until(
    'tornado-api listening',
    async () => /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(api.output())?.[1],
    20_000,
  )
}

/** Resident memory of a process in kB, from /proc (Linux). */
export const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])

/** The JSON log lines of a process's output whose event is `name` (pino: one object per line). */
export function logEvents(output: string, name: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.event === name)
}
