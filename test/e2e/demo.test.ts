import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { childEnv, freePort } from '@tornado/shared/testing'
import { until } from './processes.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

/** Processes whose environment carries this exact variable: the demo passes its own environment to every child. */
function pidsWithEnv(variable: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(variable)
      } catch {
        return false // gone meanwhile, or not ours to read
      }
    })
    .map(Number)
}

t.test('npm run demo: Ctrl-C stops the agents, then the API, then Redis, and leaves nothing behind', async (t) => {
  const marker = `TORNADO_PREFIX=demo-test-${process.pid}`
  const env = {
    ...childEnv(process.env, (name) => /^(REDIS_.*|TORNADO_.*|PORT|HOST|LOG_LEVEL|AGENT_.*)$/.test(name)),
    PORT: String(await freePort()),
    TORNADO_PREFIX: marker.split('=')[1]!,
  }
  // Its own process group, as a terminal's foreground job: Ctrl-C sends SIGINT to the whole group.
  const demo = spawn(process.execPath, ['scripts/demo.mjs'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let output = ''
  demo.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  demo.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(demo, 'exit')
  t.teardown(() => {
    for (const pid of [demo.pid!, ...pidsWithEnv(marker)]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })

  await until('the demo printing a total', async () => (/\[totals\] +200 \{"total_downloading"/.test(output) ? true : undefined), 60_000)
  t.equal(pidsWithEnv(marker).length, 5, 'Redis, the API and three agents run')
  process.kill(-demo.pid!, 'SIGINT')
  const [code] = await exited
  t.equal(code, 0, 'the demo exits 0')

  const lines = output.split('\n')
  const removed = [1, 2, 3].map((n) => lines.findIndex((line) => line.startsWith(`[node-${n}]`) && /"event":"removed".*"removed":true/.test(line)))
  t.ok(removed.every((index) => index >= 0), 'every agent removed its node from the totals')
  t.notMatch(output, /forced_exit/, 'no agent was signalled twice')
  const redisStop = lines.findIndex((line) => line.startsWith('[redis]') && /Received SIG\w+ scheduling shutdown/.test(line))
  t.match(lines[redisStop], /Received SIGTERM/, 'Redis is stopped by the demo, not by the terminal')
  t.ok(redisStop > Math.max(...removed), 'and only after the agents removed their nodes')
  t.same(pidsWithEnv(marker), [], 'no process of the demo is left')
})
