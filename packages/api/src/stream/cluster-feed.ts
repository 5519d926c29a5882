/** One listener of the feed: an open event stream. */
export interface FeedClient {
  /** Whether this client asked for the `nodes` event too. */
  readonly wantsNodes: boolean
  /** Writes one tick's text. */
  send(chunk: string): void
  /** Ends the stream (the feed is closing). */
  end(): void
}

/** What one tick sends: the same text for every client of a kind, built once. */
export interface TickChunks {
  /** For clients that want the totals only. */
  cluster: string
  /** For clients that want the node list too. */
  clusterAndNodes: string
}

/**
 * A shared ticker for the event streams: however many clients listen, each tick reads Redis once (through
 * `produce`) and sends the same text to all of them. It runs only while a client is connected: the first
 * subscriber starts it (with an immediate tick), the last one to leave stops it, so no timer outlives its clients.
 */
export class ClusterFeed {
  private readonly clients = new Set<FeedClient>()
  private timer: NodeJS.Timeout | undefined
  private inFlight = false
  /** Ticks that read Redis since the feed was made: tests compare it with the reads the store saw. */
  ticks = 0

  constructor(
    private readonly produce: (withNodes: boolean) => Promise<TickChunks>,
    private readonly onError: (err: unknown) => void,
    private readonly intervalMs = 1_000,
  ) {}

  get subscriberCount(): number {
    return this.clients.size
  }

  get running(): boolean {
    return this.timer !== undefined
  }

  /** Adds a client; returns the function that removes it (safe to call more than once). */
  subscribe(client: FeedClient): () => void {
    this.clients.add(client)
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.intervalMs)
      void this.tick()
    }
    return () => this.unsubscribe(client)
  }

  /** Ends every stream and stops the ticker: the server is closing. */
  close(): void {
    const clients = [...this.clients]
    this.clients.clear()
    this.stop()
    for (const client of clients) client.end()
  }

  private unsubscribe(client: FeedClient): void {
    this.clients.delete(client)
    if (this.clients.size === 0) this.stop()
  }

  private stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private async tick(): Promise<void> {
    // A read slower than the interval (Redis paused: up to its 1 s timeout) skips ticks instead of piling them up.
    if (this.inFlight) return
    this.inFlight = true
    this.ticks++
    try {
      const withNodes = [...this.clients].some((client) => client.wantsNodes)
      const chunks = await this.produce(withNodes)
      for (const client of this.clients) client.send(client.wantsNodes ? chunks.clusterAndNodes : chunks.cluster)
    } catch (err) {
      this.onError(err) // a bug, not an outage (produce reports those as events): log it, keep ticking
    } finally {
      this.inFlight = false
    }
  }
}

/** One Server-Sent Event: `data` is one line of JSON, so it needs no splitting. */
export const sseEvent = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
