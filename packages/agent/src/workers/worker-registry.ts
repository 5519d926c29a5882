import { MAX_JOB_COUNT, STAGES, ZERO_COUNTS, type JobCounts, type Stage } from '@tornado/shared'

/** Worker ids: short and printable, safe in a URL path and a log line. */
export const WORKER_ID_PATTERN = '^[A-Za-z0-9._:-]{1,64}$'
const WORKER_ID = new RegExp(WORKER_ID_PATTERN)
/** Workers one agent keeps at most, besides `default`: a runaway client cannot grow the agent's memory. */
export const MAX_WORKERS = 1024
/** `PUT /counts` reports as this worker, with no lease, as it always has. */
export const DEFAULT_WORKER = 'default'
export const DEFAULT_TTL_MS = 10_000
export const MIN_TTL_MS = 1_000
export const MAX_TTL_MS = 300_000

export interface WorkerEntry {
  id: string
  counts: JobCounts
  /** Dropped when no report came for this long; undefined: never (PUT /counts). */
  ttlMs: number | undefined
  /** Monotonic time of the last report. */
  reportedAt: number
}

export type ReportOutcome = { ok: true } | { ok: false; reason: 'full' } | { ok: false; reason: 'over_limit'; stage: Stage; sum: number }

export const isWorkerId = (id: string): boolean => WORKER_ID.test(id)

/**
 * The workers reporting on this node, each with its own counts and lease, and their sums kept as reports arrive,
 * so reading the node's counts is O(1). Expiry needs no timer per worker: sweep() runs once per heartbeat tick.
 */
export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerEntry>()
  private readonly sums: JobCounts = { ...ZERO_COUNTS }

  constructor(private readonly now: () => number) {}

  sum(): JobCounts {
    return { ...this.sums }
  }

  /** Takes a worker's absolute counts and renews its lease. Refused, changing nothing, when the node is full or a sum would pass MAX_JOB_COUNT. */
  report(id: string, counts: JobCounts, ttlMs: number | undefined): ReportOutcome {
    const previous = this.workers.get(id)
    if (previous === undefined && id !== DEFAULT_WORKER && this.namedWorkers() >= MAX_WORKERS) return { ok: false, reason: 'full' }
    for (const stage of STAGES) {
      const sum = this.sums[stage] - (previous?.counts[stage] ?? 0) + counts[stage]
      if (sum > MAX_JOB_COUNT) return { ok: false, reason: 'over_limit', stage, sum }
    }
    for (const stage of STAGES) this.sums[stage] += counts[stage] - (previous?.counts[stage] ?? 0)
    this.workers.set(id, { id, counts: { ...counts }, ttlMs, reportedAt: this.now() })
    return { ok: true }
  }

  /** Removes a worker at once; false when there was none by that id. */
  remove(id: string): boolean {
    const entry = this.workers.get(id)
    if (entry === undefined) return false
    this.forget(entry)
    return true
  }

  /** Drops every worker whose lease ran out and returns them (each is returned once). O(workers). */
  sweep(): WorkerEntry[] {
    const now = this.now()
    const expired: WorkerEntry[] = []
    for (const entry of this.workers.values()) {
      if (entry.ttlMs !== undefined && now - entry.reportedAt > entry.ttlMs) expired.push(entry)
    }
    for (const entry of expired) this.forget(entry)
    return expired
  }

  /** Every worker with the time since its last report, sorted by id. */
  list(): (WorkerEntry & { ageMs: number })[] {
    const now = this.now()
    return [...this.workers.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((entry) => ({ ...entry, ageMs: Math.max(0, Math.round(now - entry.reportedAt)) }))
  }

  private namedWorkers(): number {
    return this.workers.size - (this.workers.has(DEFAULT_WORKER) ? 1 : 0)
  }

  private forget(entry: WorkerEntry): void {
    this.workers.delete(entry.id)
    for (const stage of STAGES) this.sums[stage] -= entry.counts[stage]
  }
}
