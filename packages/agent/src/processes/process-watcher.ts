import { ZERO_COUNTS, type JobCounts } from '@tornado/shared'

export interface ProcessWatcherOptions {
  /** One scan of the process table. */
  scan: () => Promise<JobCounts>
  intervalMs: number
  /** Called when a scan's counts differ from the previous scan's; the agent beats at once. */
  onChange: (counts: JobCounts) => void
  /** The first of a run of failed scans (say /proc unreadable); the last counts are kept meanwhile. */
  onError: (err: unknown) => void
}

/**
 * Scans the process table once per interval on its own timer, never two scans at once, so the heartbeat only ever
 * reads `current` and never waits for a scan.
 */
export class ProcessWatcher {
  current: JobCounts = { ...ZERO_COUNTS }
  scans = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private inFlight: Promise<void> | undefined
  private failing = false

  constructor(private readonly options: ProcessWatcherOptions) {}

  /** Resolves after the first scan, so the first heartbeat already carries the watched counts. */
  async start(): Promise<void> {
    await this.scanOnce()
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.inFlight
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => void this.scanOnce().then(() => this.schedule()), this.options.intervalMs)
  }

  private scanOnce(): Promise<void> {
    this.inFlight = (async () => {
      try {
        const counts = await this.options.scan()
        this.scans++
        this.failing = false
        if (this.stopped) return
        const changed = counts.downloading !== this.current.downloading || counts.muxing !== this.current.muxing || counts.uploading !== this.current.uploading
        this.current = counts
        if (changed) this.options.onChange(counts)
      } catch (err) {
        if (!this.failing) this.options.onError(err)
        this.failing = true
      }
    })()
    return this.inFlight
  }
}
