import type { JobCounts, Stage } from '@tornado/shared'

export interface SimulatorTimers {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export interface SimulatorOptions {
  /** Called after every change of the counts, with a fresh object. */
  onChange: (counts: JobCounts) => void
  /** Uniform in [0, 1), like Math.random. */
  random?: () => number
  timers?: SimulatorTimers
  /** Mean job arrivals per minute over all nodes; each node draws its own rate from 0.5x to 1.5x of it. */
  arrivalsPerMinute?: number
}

/** Seconds a job spends in each stage: uniform between the bounds. */
export const STAGE_SECONDS: Record<Stage, readonly [number, number]> = {
  downloading: [5, 40],
  muxing: [10, 60],
  uploading: [3, 20],
}
/** Jobs one node runs at once per stage; more wait for a slot (waiting jobs are not counted in any stage). */
export const STAGE_SLOTS: Record<Stage, number> = { downloading: 4, muxing: 3, uploading: 3 }
/** Jobs on the node at most, waiting ones included; arrivals beyond it are turned away. */
export const MAX_JOBS_ON_NODE = 20

const ORDER: readonly Stage[] = ['downloading', 'muxing', 'uploading']

/**
 * A made-up workload for demos and load tests: jobs arrive as a Poisson process and go download -> mux -> upload.
 * Deterministic given `random` and `timers`, so tests step it with a fake clock.
 */
export class Simulator {
  readonly arrivalsPerMs: number
  private readonly counts: JobCounts = { downloading: 0, muxing: 0, uploading: 0 }
  /** Jobs that finished the stage before the key and wait for a slot in it. */
  private readonly waiting: Record<Stage, number> = { downloading: 0, muxing: 0, uploading: 0 }
  private readonly handles = new Set<unknown>()
  private jobsOnNode = 0
  private stopped = false
  private readonly random: () => number
  private readonly timers: SimulatorTimers

  constructor(private readonly options: SimulatorOptions) {
    this.random = options.random ?? Math.random
    this.timers = options.timers ?? { setTimeout: (cb, ms) => setTimeout(cb, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) }
    this.arrivalsPerMs = ((options.arrivalsPerMinute ?? 4) * (0.5 + this.random())) / 60_000
  }

  start(): void {
    this.scheduleArrival()
  }

  stop(): void {
    this.stopped = true
    for (const handle of this.handles) this.timers.clearTimeout(handle)
    this.handles.clear()
  }

  current(): JobCounts {
    return { ...this.counts }
  }

  private later(ms: number, callback: () => void): void {
    const handle = this.timers.setTimeout(() => {
      this.handles.delete(handle)
      if (!this.stopped) callback()
    }, ms)
    this.handles.add(handle)
  }

  private scheduleArrival(): void {
    // Exponential gaps make a Poisson process.
    const gapMs = -Math.log(1 - this.random()) / this.arrivalsPerMs
    this.later(gapMs, () => {
      if (this.jobsOnNode < MAX_JOBS_ON_NODE) {
        this.jobsOnNode++
        this.enter('downloading')
        this.changed()
      }
      this.scheduleArrival()
    })
  }

  private enter(stage: Stage): void {
    if (this.counts[stage] >= STAGE_SLOTS[stage]) {
      this.waiting[stage]++
      return
    }
    this.counts[stage]++
    const [min, max] = STAGE_SECONDS[stage]
    this.later((min + this.random() * (max - min)) * 1000, () => this.leave(stage))
  }

  /** A job finished `stage`: it moves on, and a job waiting for this stage takes its slot. One change event. */
  private leave(stage: Stage): void {
    this.counts[stage]--
    const next = ORDER[ORDER.indexOf(stage) + 1]
    if (next) this.enter(next)
    else this.jobsOnNode--
    if (this.waiting[stage] > 0) {
      this.waiting[stage]--
      this.enter(stage)
    }
    this.changed()
  }

  private changed(): void {
    this.options.onChange(this.current())
  }
}
