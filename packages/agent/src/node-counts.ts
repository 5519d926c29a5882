import { MAX_JOB_COUNT, STAGES, ZERO_COUNTS, type JobCounts } from '@tornado/shared'
import type { Logger } from 'pino'
import type { ReportOutcome, WorkerEntry, WorkerRegistry } from './workers/worker-registry.js'

export interface NodeCountsOptions {
  workers: WorkerRegistry
  logger: Logger
  /** The node's counts changed: the agent beats at once (coalesced by the heartbeat loop). */
  onChange: () => void
}

/**
 * What this node is doing: the sum of its workers' reports, the processes it watches and the simulated workload.
 * Every change of the sum, and only a change, asks for an immediate beat, so lease renewals with the same counts
 * cost no Redis writes.
 */
export class NodeCounts {
  private watched: JobCounts = { ...ZERO_COUNTS }
  private simulated: JobCounts = { ...ZERO_COUNTS }
  private announced: JobCounts = { ...ZERO_COUNTS }

  constructor(private readonly options: NodeCountsOptions) {}

  /** The node's counts: each stage summed over every source, held at MAX_JOB_COUNT, which a heartbeat may carry. */
  total(): JobCounts {
    const workers = this.options.workers.sum()
    const total = { ...ZERO_COUNTS }
    for (const stage of STAGES) total[stage] = Math.min(MAX_JOB_COUNT, workers[stage] + this.watched[stage] + this.simulated[stage])
    return total
  }

  report(workerId: string, counts: JobCounts, ttlMs: number | undefined): ReportOutcome {
    let outcome = this.options.workers.report(workerId, counts, ttlMs)
    if (!outcome.ok && outcome.reason === 'full' && this.expire()) {
      outcome = this.options.workers.report(workerId, counts, ttlMs) // dead workers must not keep a live one out
    }
    this.announceChange()
    return outcome
  }

  remove(workerId: string): boolean {
    const removed = this.options.workers.remove(workerId)
    this.announceChange()
    return removed
  }

  /** Workers as GET /workers shows them: leases that ran out are dropped first. */
  listWorkers(): ReturnType<WorkerRegistry['list']> {
    this.expire()
    this.announceChange()
    return this.options.workers.list()
  }

  setWatched(counts: JobCounts): void {
    this.watched = { ...counts }
    this.announceChange()
  }

  setSimulated(counts: JobCounts): void {
    this.simulated = { ...counts }
    this.announceChange()
  }

  /**
   * The counts for the beat being built: the once-per-tick sweep of expired leases happens here. It announces
   * nothing, since this very beat carries the change.
   */
  forBeat(): JobCounts {
    this.expire()
    this.announced = this.total()
    return this.announced
  }

  /** Drops the workers whose lease ran out, logging each once; true when there were any. */
  private expire(): boolean {
    const expired = this.options.workers.sweep()
    for (const worker of expired) {
      this.options.logger.warn(
        { event: 'worker_expired', worker_id: worker.id, ttl_ms: worker.ttlMs, counts: worker.counts },
        `worker ${worker.id} sent no report for over ${worker.ttlMs} ms; its counts left this node's totals`,
      )
    }
    return expired.length > 0
  }

  private announceChange(): void {
    const total = this.total()
    if (STAGES.every((stage) => total[stage] === this.announced[stage])) return
    this.announced = total
    this.options.onChange()
  }
}
