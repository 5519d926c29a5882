import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { JobCounts } from '@tornado/shared'
import type { BeatObserver } from './heartbeat-loop.js'

/** A beat is one Lua script call: well under 1 ms on a LAN, so 1 ms .. 1 s (the fail-fast command timeout). */
export const BEAT_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

const STAGES = ['downloading', 'muxing', 'uploading'] as const

export interface AgentMetricsOptions {
  /** The node's counts as the next heartbeat carries them; read at scrape time. */
  counts: () => JobCounts
  /** Whether the latest beat was written; read at scrape time. */
  redisUp: () => boolean
  /** prom-client's process_* and nodejs_* metrics. Default true. */
  processMetrics?: boolean
}

/**
 * The agent's Prometheus metrics, in a registry of its own (not prom-client's global one), so that every agent
 * started in one process (tests start many) reports only its own beats. It hears beats as the loop's observer.
 */
export class AgentMetrics implements BeatObserver {
  readonly registry = new Registry()

  private readonly beats = new Counter({
    name: 'tornado_agent_beats_total',
    help: 'Heartbeats written to Redis',
    registers: [this.registry],
  })

  private readonly failures = new Counter({
    name: 'tornado_agent_beat_failures_total',
    help: 'Heartbeats that could not be written (Redis unreachable or too slow); the loop retries every interval',
    registers: [this.registry],
  })

  private readonly lastDuration = new Gauge({
    name: 'tornado_agent_last_beat_duration_seconds',
    help: 'Round trip of the latest written heartbeat (one Redis script call); 0 before the first',
    registers: [this.registry],
  })

  private readonly duration = new Histogram({
    name: 'tornado_agent_beat_duration_seconds',
    help: 'Round trip of each written heartbeat (one Redis script call)',
    buckets: BEAT_BUCKETS_SECONDS,
    registers: [this.registry],
  })

  private readonly duplicates = new Counter({
    name: 'tornado_agent_duplicate_overwrites_total',
    help: 'Beats that found another live agent\'s beat in this node id\'s record: two agents share TORNADO_NODE_ID',
    registers: [this.registry],
  })

  constructor(options: AgentMetricsOptions) {
    new Gauge({
      name: 'tornado_agent_jobs',
      help: 'Jobs on this node by stage, as the next heartbeat carries them (workers\' reports plus watched processes)',
      labelNames: ['stage'] as const,
      registers: [this.registry],
      collect() {
        const counts = options.counts()
        for (const stage of STAGES) this.set({ stage }, counts[stage])
      },
    })
    new Gauge({
      name: 'tornado_agent_redis_up',
      help: '1 when the latest heartbeat was written, 0 when it failed (or none was tried yet)',
      registers: [this.registry],
      collect() {
        this.set(options.redisUp() ? 1 : 0)
      },
    })
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry })
  }

  written(durationMs: number): void {
    const seconds = durationMs / 1000
    this.beats.inc()
    this.lastDuration.set(seconds)
    this.duration.observe(seconds)
  }

  failed(): void {
    this.failures.inc()
  }

  duplicate(): void {
    this.duplicates.inc()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  render(): Promise<string> {
    return this.registry.metrics()
  }
}
