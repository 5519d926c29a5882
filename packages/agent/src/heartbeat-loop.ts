import { performance } from 'node:perf_hooks'
import type { BeatResult, NodeHeartbeat } from '@tornado/shared'
import type { Logger } from 'pino'

export interface BeatWriter {
  writeHeartbeat(beat: NodeHeartbeat): Promise<BeatResult>
}

/**
 * What the loop tells about each beat (the agent's metrics listen here, so the loop stays free of them). Called
 * synchronously after the beat settled; it must not throw.
 */
export interface BeatObserver {
  /** A beat was written; `durationMs` is the store's round trip on the monotonic clock. */
  written(durationMs: number): void
  /** A beat failed (Redis unreachable, a command timed out, ...). */
  failed(): void
  /** The record held another live agent's beat (same node id) since this agent's previous one. */
  duplicate(): void
}

export interface HeartbeatLoopOptions {
  store: BeatWriter
  intervalMs: number
  /** Builds the beat from the last known state; must be cheap and synchronous. */
  nextBeat: () => NodeHeartbeat
  logger: Logger
  /** Monotonic milliseconds, for the cadence. */
  monotonicNow?: () => number
  /** What to log about a failed beat; never a URL or password. Default: describeError. */
  describeFailure?: (err: unknown) => string
  observer?: BeatObserver
}

/** How often a duplicate node id is reported again while it lasts. */
export const DUPLICATE_WARN_EVERY_MS = 10_000

/**
 * The heartbeat: one timer, never two beats at once. Each beat is one store round trip; the next timer is set
 * only after it settles, against a fixed cadence (target += interval; when behind, the next beat is now, once).
 * `beatNow()` asks for an extra beat (counts changed): it runs at once, or right after the one in flight, and
 * any number of asks while a beat is in flight make exactly one more beat.
 */
export class HeartbeatLoop {
  /** true after a beat succeeded, false after one failed, undefined before the first. */
  redisUp: boolean | undefined
  /** Beats written. */
  beats = 0
  /** Beats that failed. */
  failures = 0
  private running = false
  private inFlight: Promise<void> | undefined
  private beatRequested = false
  private timer: NodeJS.Timeout | undefined
  private nextTargetMs = 0
  private wroteOnce = false
  private lastDuplicateLogMs = -Infinity
  private duplicatesSinceLog = 0
  private readonly now: () => number

  constructor(private readonly options: HeartbeatLoopOptions) {
    this.now = options.monotonicNow ?? (() => performance.now())
  }

  /** Starts beating; resolves when the first beat has settled (written or failed). */
  start(): Promise<void> {
    this.running = true
    this.nextTargetMs = this.now() + this.options.intervalMs
    this.beat()
    return this.inFlight ?? Promise.resolve()
  }

  beatNow(): void {
    if (!this.running) return
    if (this.inFlight) this.beatRequested = true
    else this.beat()
  }

  /** Stops the timer and waits for a beat in flight; no beat starts afterwards. */
  async stop(): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    await this.inFlight
  }

  private onTimer(): void {
    this.nextTargetMs += this.options.intervalMs
    this.beat()
  }

  private beat(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.inFlight = this.writeOnce().finally(() => {
      this.inFlight = undefined
      if (!this.running) return
      if (this.beatRequested) {
        this.beatRequested = false
        this.beat()
        return
      }
      const now = this.now()
      if (this.nextTargetMs < now) this.nextTargetMs = now // fell behind: skip the missed beats, no burst
      this.timer = setTimeout(() => this.onTimer(), this.nextTargetMs - now)
    })
  }

  /** The one place a beat's outcome is handled; it never throws. */
  private async writeOnce(): Promise<void> {
    const { logger, observer } = this.options
    let beat: NodeHeartbeat | undefined
    let writtenInMs: number | undefined
    let duplicate = false
    try {
      beat = this.options.nextBeat()
      const started = this.now()
      const result = await this.options.store.writeHeartbeat(beat)
      writtenInMs = this.now() - started
      this.beats++
      if (this.redisUp === false) logger.info({ event: 'redis_recovered' }, 'redis is reachable again; heartbeat written')
      this.redisUp = true
      duplicate = this.checkPreviousWriter(beat, result)
      if (result.dropped > 0) logger.warn({ event: 'garbage_dropped', dropped: result.dropped }, 'dropped malformed heartbeat records found in redis')
    } catch (err) {
      this.failures++
      if (this.redisUp !== false) {
        const describe = this.options.describeFailure ?? describeError
        logger.warn({ event: 'redis_down', err: describe(err) }, 'cannot write heartbeat, redis unreachable; retrying every beat')
      }
      this.redisUp = false
    }
    // Outside the try: an observer's mistake must not count as a failed beat.
    if (writtenInMs === undefined) observer?.failed()
    else observer?.written(writtenInMs)
    if (duplicate) observer?.duplicate()
  }

  /** Logs another writer of this node id's record; true when that was another live agent (not a previous run). */
  private checkPreviousWriter(beat: NodeHeartbeat, result: BeatResult): boolean {
    const first = !this.wroteOnce
    this.wroteOnce = true
    const other = result.previousInstanceId
    if (other === '' || other === beat.instanceId) return false
    const { logger } = this.options
    const details = { node_id: beat.nodeId, other_instance: other, other_age_ms: result.previousAgeMs }
    if (first) {
      // Usually this node's previous run (a crash or restart); a second sighting below means it is alive.
      logger.warn({ event: 'replaced_previous_run', ...details }, 'replacing the record of a previous run of this node id')
      return false
    }
    this.duplicatesSinceLog++
    const now = this.now()
    if (now - this.lastDuplicateLogMs < DUPLICATE_WARN_EVERY_MS) return true
    logger.error(
      { event: 'duplicate_node_id', ...details, overwrites: this.duplicatesSinceLog },
      `node id ${beat.nodeId} is already beating from another agent; both overwrite one record and the totals are wrong. Set TORNADO_NODE_ID to a unique id on each node`,
    )
    this.lastDuplicateLogMs = now
    this.duplicatesSinceLog = 0
    return true
  }
}

/** An error for a log line: its message only, with anything URL-shaped removed (a Redis URL can hold a password). */
export function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.replace(/\b\w+:\/\/\S+/g, '(url)')
}
