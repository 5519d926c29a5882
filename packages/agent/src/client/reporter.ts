/*
 * The worker-side client of the agent's local interface. Worker code imports it as `@tornado/agent/client`: it uses
 * nothing but Node's built-ins and fetch, so importing it loads none of the agent's own dependencies.
 */

export type Stage = 'downloading' | 'muxing' | 'uploading'
export type StageCounts = Record<Stage, number>

const STAGES: readonly Stage[] = ['downloading', 'muxing', 'uploading']
/** The agent's rule for worker ids (WORKER_ID_PATTERN), checked here so a typo fails at start, not on every report. */
const WORKER_ID = /^[A-Za-z0-9._:-]{1,64}$/
/** What AGENT_TOKEN may hold (the agent checks its length); anything else could not travel in a header anyway. */
const TOKEN = /^[\x21-\x7E]+$/

export interface ReporterLogger {
  warn(message: string): void
  info?(message: string): void
}

export interface ReporterOptions {
  /** The agent's local interface. Default http://127.0.0.1:7071 (the agent's default AGENT_LISTEN). */
  url?: string
  /**
   * The agent's AGENT_TOKEN, when it has one: sent as `Authorization: Bearer <token>`. Default (or ''): none. It appears in
   * no log line; a wrong one makes every report fail with 401 (logged once, like an unreachable agent).
   */
  token?: string
  /** This worker's id on the node, unique among its workers: letters, digits and . _ : -, up to 64. */
  workerId: string
  /** The lease: the agent drops this worker's counts after this long without a report. 1000 to 300000, default 10000. */
  ttlMs?: number
  /** Where the one line about an unreachable agent (and the one about its return) goes. Default: console. */
  logger?: ReporterLogger
  /** Time between attempts while the agent is unreachable. Default 1000. */
  retryMs?: number
  /** A report that takes longer than this fails (and is retried). Default 2000. */
  requestTimeoutMs?: number
}

export interface Reporter {
  /**
   * Counts one job in `stage` while `job` runs, and returns (or rethrows) what it returns (or throws). Reporting
   * never throws into the caller: with the agent away, the job runs all the same.
   */
  track<T>(stage: Stage, job: () => T | Promise<T>): Promise<T>
  /** The jobs this worker is running now, per stage. */
  counts(): StageCounts
  /** Stops reporting and removes this worker from the agent at once. Never throws. */
  close(): Promise<void>
}

export function createReporter(options: ReporterOptions): Reporter {
  return new AgentReporter(options)
}

class AgentReporter implements Reporter {
  private readonly current: StageCounts = { downloading: 0, muxing: 0, uploading: 0 }
  private readonly workerUrl: string
  private readonly headers: Record<string, string>
  private readonly ttlMs: number
  private readonly retryMs: number
  private readonly requestTimeoutMs: number
  private readonly logger: ReporterLogger
  private readonly keepAlive: NodeJS.Timeout
  private retryTimer: NodeJS.Timeout | undefined
  private sending: Promise<void> | undefined
  private sendAgain = false
  /** true while the agent is unreachable: the outage has been logged and retries are on. */
  private failing = false
  private closed = false

  constructor(options: ReporterOptions) {
    if (!WORKER_ID.test(options.workerId)) {
      throw new TypeError(`workerId ${JSON.stringify(options.workerId)} is invalid: use 1 to 64 letters, digits, or . _ : -`)
    }
    this.ttlMs = options.ttlMs ?? 10_000
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1000 || this.ttlMs > 300_000) {
      throw new TypeError(`ttlMs ${this.ttlMs} is invalid: use an integer from 1000 to 300000`)
    }
    const base = new URL(options.url ?? 'http://127.0.0.1:7071') // throws on a malformed URL
    this.workerUrl = new URL(`workers/${options.workerId}`, base.href.endsWith('/') ? base : `${base.href}/`).href
    // '' is no token, as an empty AGENT_TOKEN is unset for the agent: `token: process.env.AGENT_TOKEN` just works.
    const token = options.token === '' ? undefined : options.token
    if (token !== undefined && !TOKEN.test(token)) {
      // The token itself is not shown: it is a secret even when malformed.
      throw new TypeError('token is invalid: use the agent\'s AGENT_TOKEN, printable ASCII characters without spaces')
    }
    this.headers = token === undefined ? {} : { authorization: `Bearer ${token}` }
    this.retryMs = options.retryMs ?? 1000
    this.requestTimeoutMs = options.requestTimeoutMs ?? 2000
    this.logger = options.logger ?? console
    // Renewing the lease three times per ttl lets two reports in a row go missing before the agent gives up on us.
    this.keepAlive = setInterval(() => this.send(), Math.floor(this.ttlMs / 3))
    this.keepAlive.unref() // reporting alone never keeps a worker process alive
    this.send()
  }

  counts(): StageCounts {
    return { ...this.current }
  }

  async track<T>(stage: Stage, job: () => T | Promise<T>): Promise<T> {
    if (!STAGES.includes(stage)) throw new TypeError(`stage ${JSON.stringify(stage)} is invalid: use ${STAGES.join(', ')}`)
    this.current[stage]++
    this.send()
    try {
      return await job()
    } finally {
      this.current[stage]--
      this.send()
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.keepAlive)
    clearTimeout(this.retryTimer)
    await this.sending
    try {
      const response = await fetch(this.workerUrl, { method: 'DELETE', headers: this.headers, signal: AbortSignal.timeout(this.requestTimeoutMs) })
      await response.body?.cancel()
    } catch (err) {
      // The agent is away: it drops this worker when the lease runs out.
      if (!this.failing) this.logger.warn(`tornado reporter ${this.workerUrl}: could not remove this worker (${describe(err)}); the agent drops it after ${this.ttlMs} ms`)
    }
  }

  /** Sends the current counts: at once, or right after the report in flight, which then carries the latest. */
  private send(): void {
    if (this.closed) return
    if (this.sending) {
      this.sendAgain = true
      return
    }
    this.sending = this.put().finally(() => {
      this.sending = undefined
      if (this.sendAgain) {
        this.sendAgain = false
        this.send()
      }
    })
  }

  /** One report of the absolute counts, so a lost or repeated one can never skew them. Never rejects. */
  private async put(): Promise<void> {
    let problem: string | undefined
    try {
      const response = await fetch(`${this.workerUrl}/counts`, {
        method: 'PUT',
        headers: { ...this.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ ...this.current, ttl_ms: this.ttlMs }),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      })
      const text = await response.text()
      if (response.status !== 204) problem = `HTTP ${response.status} ${text}`
    } catch (err) {
      problem = describe(err)
    }
    if (problem === undefined) {
      if (this.failing) (this.logger.info ?? this.logger.warn).call(this.logger, `tornado reporter ${this.workerUrl}: the agent takes reports again`)
      this.failing = false
      return
    }
    if (!this.failing) {
      this.logger.warn(`tornado reporter ${this.workerUrl}: cannot report to the agent (${problem}); jobs run on, retrying every ${this.retryMs} ms`)
    }
    this.failing = true
    this.retryLater()
  }

  private retryLater(): void {
    if (this.closed || this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.send()
    }, this.retryMs)
    this.retryTimer.unref()
  }
}

/** A fetch failure in words: undici hides the reason (ECONNREFUSED ...) in `cause`. */
function describe(err: unknown): string {
  const error = err as { name?: string; message?: string; cause?: { code?: string; message?: string } }
  if (error.name === 'TimeoutError') return 'no answer in time'
  return error.cause?.code ?? error.cause?.message ?? error.message ?? String(err)
}
