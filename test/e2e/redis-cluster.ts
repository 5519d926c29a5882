import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort } from '@tornado/shared/testing'

/** A private Redis Cluster of `masters` masters (no replicas) on loopback; killed and removed in teardown. */
export async function startRedisCluster(t: Test, masters = 3): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tornado-cluster-'))
  const ports = await Promise.all(Array.from({ length: masters }, () => freePort()))
  const servers: ChildProcess[] = ports.map((port) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }),
  )
  const kill = () => servers.forEach((server) => server.exitCode === null && server.kill('SIGKILL'))
  // Also when tap times the file out (SIGALRM, then SIGKILL): no server outlives the test.
  process.once('exit', kill)
  process.once('SIGALRM', kill)
  t.teardown(async () => {
    process.off('exit', kill)
    process.off('SIGALRM', kill)
    await Promise.all(servers.map(async (server) => {
      if (server.exitCode === null && server.signalCode === null) {
        server.kill('SIGKILL')
        await once(server, 'exit')
      }
    }))
    rmSync(dir, { recursive: true, force: true })
  })
  const cli = (port: number, ...args: string[]) => spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout ?? ''
  const waitFor = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 10_000
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`Redis Cluster: ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await waitFor('a node did not start', () => ports.every((port) => cli(port, 'ping').trim() === 'PONG'))
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-yes'], { encoding: 'utf8' })
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout.slice(-300)}`)
  await waitFor('did not reach state ok', () => ports.every((port) => cli(port, 'cluster', 'info').includes('cluster_state:ok')))
  return ports
}
