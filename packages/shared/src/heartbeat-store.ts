import type { Cluster, Redis } from 'ioredis'
import { BEAT_SCRIPT, LIST_SCRIPT, RECOUNT_SCRIPT, REMOVE_SCRIPT, TOTALS_SCRIPT } from './heartbeat-scripts.js'
import { MAX_JOB_COUNT, type ClusterTotals, type JobCounts, type NodeHeartbeat } from './schemas.js'

/**
 * The one place that knows how heartbeats are stored in Redis. Agent and API both go through it.
 * Keys live under `{<prefix>:<shard>}`: the braces are a Redis Cluster hash tag, so every key a script touches
 * is in one slot. Nodes spread over `shards` groups by a stable hash of their id.
 */
export interface StoreLayout {
  prefix: string
  shards: number
}

export type RedisClient = Redis | Cluster

/** Beats also prune a few stale nodes, so records stay bounded even when no API reads. */
const PRUNE_PER_BEAT = 16

export function shardOf(nodeId: string, shards: number): number {
  if (shards === 1) return 0
  // FNV-1a: stable across processes, versions and platforms.
  let hash = 0x811c9dc5
  for (let i = 0; i < nodeId.length; i++) {
    hash ^= nodeId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % shards
}

/**
 * The keys of one shard. shard may also be a glob over shard numbers (e.g. `[0-9]`): that gives the key patterns of
 * Redis ACL rules (acl.ts in @tornado/api), from this one definition of the layout.
 */
export function shardKeys(layout: Pick<StoreLayout, 'prefix'>, shard: number | string) {
  const tag = `{${layout.prefix}:${shard}}`
  return {
    nodes: `${tag}:nodes`,
    totals: `${tag}:totals`,
    nodePrefix: `${tag}:node:`,
  }
}

export function heartbeatKey(layout: StoreLayout, nodeId: string): string {
  return shardKeys(layout, shardOf(nodeId, layout.shards)).nodePrefix + nodeId
}

export interface BeatResult {
  /** The instance that wrote this node's record before, '' when there was none. */
  previousInstanceId: string
  /** How long ago (Redis clock) the previous beat of this node id was, or -1. */
  previousAgeMs: number
  /** Garbage records found and dropped on the way. */
  dropped: number
  redisTimeMs: number
}

export interface ClusterSnapshot {
  totals: ClusterTotals
  /** Nodes whose last heartbeat is at most staleAfterMs old. */
  liveNodes: number
  /** Of the live nodes, those whose last heartbeat is younger than readTotals' freshWithinMs. */
  freshNodes: number
  pruned: number
  dropped: number
  redisTimeMs: number
}

/** One node whose last heartbeat is at most staleAfterMs old, as its latest heartbeat left it. */
export interface LiveNode {
  id: string
  hostname: string
  ip: string
  counts: JobCounts
  /** Age of its last heartbeat on the Redis server's clock, never negative. */
  lastSeenMsAgo: number
}

export interface NodeListSnapshot {
  /** Sorted by id (code unit order, the same in every locale). */
  nodes: LiveNode[]
  pruned: number
  dropped: number
  redisTimeMs: number
}

/** One node's record as stored, with the time of its last heartbeat on Redis's clock. */
export interface StoredNode {
  nodeId: string
  instanceId: string
  hostname: string
  ip: string
  counts: JobCounts
  agentTimeMs: number
  lastSeenMs: number
}

/** Reads a record's text (see heartbeat-scripts.ts); undefined when it is not one. */
export function parseRecord(nodeId: string, text: string): Omit<StoredNode, 'lastSeenMs'> & { seenMs: number } | undefined {
  const match = /^(\d+)\|(\d+)\|(\d+)\|(\d+)\|(\d*)\|([^|]+)\|([^|]*)\|(.*)$/s.exec(text)
  if (!match) return undefined
  const [, downloading, muxing, uploading, seen, agentTime, instanceId, ip, hostname] = match as unknown as string[]
  const counts = { downloading: Number(downloading), muxing: Number(muxing), uploading: Number(uploading) }
  // The scripts' rules (jobCount): a count above MAX_JOB_COUNT makes the record garbage; times must be exact numbers.
  if (Object.values(counts).some((n) => n > MAX_JOB_COUNT)) return undefined
  const agentTimeMs = Number(agentTime)
  const seenMs = Number(seen)
  if (!Number.isSafeInteger(agentTimeMs) || !Number.isSafeInteger(seenMs)) return undefined
  return { nodeId, instanceId: instanceId!, hostname: hostname!, ip: ip!, counts, agentTimeMs, seenMs }
}

export interface RecountResult {
  kept: ClusterTotals
  recounted: ClusterTotals
  liveNodes: number
  dropped: number
}

interface ScriptCommands {
  tornadoBeat(...args: (string | number)[]): Promise<[string, number, number, number, number]>
  tornadoRemove(...args: string[]): Promise<number>
  tornadoTotals(...args: (string | number)[]): Promise<number[]>
  tornadoRecount(...args: (string | number)[]): Promise<number[]>
  tornadoList(...args: (string | number)[]): Promise<(string | number)[]>
}

const registered = new WeakSet<object>()

/** Registers the scripts once per client; ioredis then runs them by EVALSHA and reloads them after NOSCRIPT. */
function withScripts(redis: RedisClient): RedisClient & ScriptCommands {
  if (!registered.has(redis)) {
    redis.defineCommand('tornadoBeat', { numberOfKeys: 3, lua: BEAT_SCRIPT })
    redis.defineCommand('tornadoRemove', { numberOfKeys: 3, lua: REMOVE_SCRIPT })
    redis.defineCommand('tornadoTotals', { numberOfKeys: 2, lua: TOTALS_SCRIPT })
    redis.defineCommand('tornadoRecount', { numberOfKeys: 2, lua: RECOUNT_SCRIPT })
    redis.defineCommand('tornadoList', { numberOfKeys: 2, lua: LIST_SCRIPT })
    registered.add(redis)
  }
  return redis as RedisClient & ScriptCommands
}

const toTotals = (d: number, m: number, u: number): ClusterTotals => ({
  total_downloading: d,
  total_muxing: m,
  total_uploading: u,
})

export class HeartbeatStore {
  private readonly redis: RedisClient & ScriptCommands

  constructor(
    redis: RedisClient,
    readonly layout: StoreLayout,
    readonly staleAfterMs: number,
  ) {
    this.redis = withScripts(redis)
  }

  /** Writes one heartbeat in one round trip: the record, its time on Redis's clock and the change to the totals. */
  async writeHeartbeat(beat: NodeHeartbeat): Promise<BeatResult> {
    const keys = shardKeys(this.layout, shardOf(beat.nodeId, this.layout.shards))
    const { downloading, muxing, uploading } = beat.counts
    const [previousInstanceId, previousAgeMs, , dropped, redisTimeMs] = await this.redis.tornadoBeat(
      keys.nodes,
      keys.nodePrefix + beat.nodeId,
      keys.totals,
      beat.nodeId,
      beat.instanceId,
      beat.hostname,
      beat.ip,
      downloading,
      muxing,
      uploading,
      beat.agentTimeMs,
      this.staleAfterMs,
      PRUNE_PER_BEAT,
      keys.nodePrefix,
    )
    return { previousInstanceId, previousAgeMs, dropped, redisTimeMs }
  }

  /** Takes a node out of the totals at once. Returns false when there was nothing of this instance to remove. */
  async removeNode(nodeId: string, instanceId: string): Promise<boolean> {
    const keys = shardKeys(this.layout, shardOf(nodeId, this.layout.shards))
    const removed = await this.redis.tornadoRemove(
      keys.nodes,
      keys.nodePrefix + nodeId,
      keys.totals,
      nodeId,
      instanceId,
      keys.nodePrefix,
    )
    return removed === 1
  }

  /**
   * The totals over every live node: one script per shard, O(1) each but for nodes pruned since the last read.
   * freshNodes counts the live nodes seen within freshWithinMs (default: every live node).
   */
  async readTotals(freshWithinMs = this.staleAfterMs): Promise<ClusterSnapshot> {
    const replies = await Promise.all(
      this.shards().map((keys) =>
        this.redis.tornadoTotals(keys.nodes, keys.totals, this.staleAfterMs, keys.nodePrefix, freshWithinMs),
      ),
    )
    const sum = [0, 0, 0, 0, 0, 0, 0]
    let redisTimeMs = 0
    for (const reply of replies) {
      for (let i = 0; i < 6; i++) sum[i]! += Number(reply[i])
      sum[6]! += Number(reply[7])
      redisTimeMs = Math.max(redisTimeMs, Number(reply[6]))
    }
    return {
      totals: toTotals(sum[0]!, sum[1]!, sum[2]!),
      liveNodes: sum[3]!,
      freshNodes: sum[6]!,
      pruned: sum[4]!,
      dropped: sum[5]!,
      redisTimeMs,
    }
  }

  /** Rebuilds the kept totals from every live record (O(fleet)); returns them with what was kept before. */
  async recount(): Promise<RecountResult> {
    const replies = await Promise.all(
      this.shards().map((keys) =>
        this.redis.tornadoRecount(keys.nodes, keys.totals, this.staleAfterMs, keys.nodePrefix),
      ),
    )
    const sum = [0, 0, 0, 0, 0, 0, 0, 0]
    for (const reply of replies) for (let i = 0; i < 8; i++) sum[i]! += Number(reply[i])
    return {
      kept: toTotals(sum[0]!, sum[1]!, sum[2]!),
      recounted: toTotals(sum[3]!, sum[4]!, sum[5]!),
      liveNodes: sum[6]!,
      dropped: sum[7]!,
    }
  }

  /** One node's stored record, or undefined when it has none (or a garbage one). For operators and tests. */
  async readNode(nodeId: string): Promise<StoredNode | undefined> {
    const keys = shardKeys(this.layout, shardOf(nodeId, this.layout.shards))
    const [text, score] = await Promise.all([this.redis.get(keys.nodePrefix + nodeId), this.redis.zscore(keys.nodes, nodeId)])
    const record = text === null ? undefined : parseRecord(nodeId, text)
    if (!record || score === null) return undefined
    const { seenMs: _, ...rest } = record
    return { ...rest, lastSeenMs: Number(score) }
  }

  /** Every live node with its record: one script per shard, O(live nodes), for a node table. */
  async listNodes(): Promise<NodeListSnapshot> {
    const replies = await Promise.all(
      this.shards().map((keys) => this.redis.tornadoList(keys.nodes, keys.totals, this.staleAfterMs, keys.nodePrefix)),
    )
    const nodes: LiveNode[] = []
    let pruned = 0
    let dropped = 0
    let redisTimeMs = 0
    for (const reply of replies) {
      const now = Number(reply[0])
      redisTimeMs = Math.max(redisTimeMs, now)
      pruned += Number(reply[1])
      dropped += Number(reply[2])
      for (let i = 3; i + 6 < reply.length; i += 7) {
        nodes.push({
          id: String(reply[i]),
          hostname: String(reply[i + 1]),
          ip: String(reply[i + 2]),
          counts: { downloading: Number(reply[i + 3]), muxing: Number(reply[i + 4]), uploading: Number(reply[i + 5]) },
          lastSeenMsAgo: Math.max(0, now - Number(reply[i + 6])),
        })
      }
    }
    nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    return { nodes, pruned, dropped, redisTimeMs }
  }

  private shards() {
    return Array.from({ length: this.layout.shards }, (_, shard) => shardKeys(this.layout, shard))
  }
}

