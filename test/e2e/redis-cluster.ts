import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { freePort } from '@tornado/shared/testing'
import { until } from './processes.js'

const execFileAsync = promisify(execFile)

/** One redis-cli command against a node on loopback; its reply as text. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 5_000 })
  return stdout
}

export interface ClusterNode {
  id: string
  port: number
  /** e.g. ['myself', 'master'], ['slave'], ['master', 'fail'] */
  flags: string[]
  /** The master's id for a replica, '-' for a master. */
  masterId: string
  slots: [number, number][]
}

/** CLUSTER NODES as one node sees it. */
export async function clusterNodes(port: number): Promise<ClusterNode[]> {
  const text = await cli(port, 'cluster', 'nodes')
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, masterId, , , , , ...slots] = line.split(' ')
    return {
      id: id!,
      port: Number(/:(\d+)@/.exec(address!)?.[1]),
      flags: flags!.split(','),
      masterId: masterId!,
      slots: slots.filter((s) => /^\d/.test(s)).map((s) => {
        const [from, to] = s.split('-').map(Number)
        return [from!, to ?? from!] as [number, number]
      }),
    }
  })
}

export const isMaster = (node: ClusterNode) => node.flags.includes('master') && !node.flags.some((f) => f === 'fail' || f === 'fail?')

export interface RedisCluster {
  /** Every node's port, masters and replicas. */
  ports: number[]
  /** Joins the nodes into one cluster, half masters and one replica each; resolves once it is ok and in sync. */
  create(): Promise<void>
  /** SIGKILLs one node: no goodbye to its peers, as when a host dies. */
  kill(port: number): Promise<void>
  /** The port of the master serving a key's slot, as a given node sees it. */
  masterOf(key: string, askPort: number): Promise<number>
}

/**
 * Real cluster-enabled redis-servers on loopback, `masters` with `replicas` each (default 1), answering PING but not
 * yet a cluster (so clients can be started meanwhile). A short node timeout makes a failover take seconds; a validity factor of 0 lets
 * a replica be promoted however long it was cut off (a loaded test box).
 */
export async function startRedisNodes(t: Test, masters: number, { nodeTimeoutMs = 1000, replicas = 1 } = {}): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tornado-cluster-'))
  const ports = await Promise.all(Array.from({ length: masters * (1 + replicas) }, () => freePort()))
  const servers = new Map<number, ChildProcess>()
  for (const port of ports) {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`)]
    args.push('--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-replica-validity-factor', '0', '--save', '', '--appendonly', 'no', '--dir', dir)
    servers.set(port, spawn('redis-server', args, { stdio: 'ignore' }))
  }
  const kill = async (port: number) => {
    const server = servers.get(port)!
    if (server.exitCode !== null || server.signalCode !== null) return
    server.kill('SIGKILL')
    await once(server, 'exit')
  }
  // Also when tap times the file out (SIGALRM, then SIGKILL): no server outlives the test.
  const killAll = () => servers.forEach((server) => server.exitCode === null && server.kill('SIGKILL'))
  process.once('exit', killAll)
  process.once('SIGALRM', killAll)
  t.teardown(async () => {
    process.off('exit', killAll)
    process.off('SIGALRM', killAll)
    await Promise.all(ports.map(kill))
    rmSync(dir, { recursive: true, force: true })
  })
  await Promise.all(ports.map((port) => until(`redis-server ${port} answering`, async () => ((await cli(port, 'ping')).trim() === 'PONG' ? true : undefined), 10_000)))

  const create = async () => {
    const nodes = ports.map((p) => `127.0.0.1:${p}`)
    const { stdout, stderr } = await execFileAsync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
    if (!stdout.includes('[OK] All 16384 slots covered')) throw new Error(`redis-cli --cluster create: ${stdout.slice(-500)}${stderr}`)
    await until(
      'cluster ok on every node, every replica in sync',
      async () => {
        for (const port of ports) {
          if (!(await cli(port, 'cluster', 'info')).includes('cluster_state:ok')) return undefined
          const seen = await clusterNodes(port)
          if (seen.filter(isMaster).length !== masters || seen.filter((n) => n.flags.includes('slave')).length !== masters * replicas) return undefined
          const replication = await cli(port, 'info', 'replication')
          if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return undefined
        }
        return true
      },
      20_000,
    )
  }
  const masterOf = async (key: string, askPort: number) => {
    const slot = Number((await cli(askPort, 'cluster', 'keyslot', key)).trim())
    const owner = (await clusterNodes(askPort)).find((n) => isMaster(n) && n.slots.some(([from, to]) => slot >= from && slot <= to))
    if (!owner) throw new Error(`no master serves slot ${slot}`)
    return owner.port
  }
  return { ports, create, kill, masterOf }
}

/** A ready private Redis Cluster of `masters` masters without replicas; returns their ports. */
export async function startRedisCluster(t: Test, masters = 3): Promise<number[]> {
  const cluster = await startRedisNodes(t, masters, { replicas: 0 })
  await cluster.create()
  return cluster.ports
}
