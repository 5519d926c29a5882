import { request, type IncomingMessage } from 'node:http'

export interface ServerSentEvent {
  event: string
  data: string
}

export interface EventStreamClient {
  status: number
  headers: IncomingMessage['headers']
  /** The body so far, raw, for exact comparisons. */
  raw: () => string
  /** The next event (events already received are queued), or a rejection after timeoutMs. */
  next: (timeoutMs?: number) => Promise<ServerSentEvent>
  /** Resolves when the server ends the response or the connection closes. */
  ended: Promise<void>
  /** Drops the connection, as a closed browser tab does. */
  close: () => void
}

/** A real HTTP client of a text/event-stream: parses `event:`/`data:` blocks; a non-200 body is kept in raw(). */
export function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStreamClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let raw = ''
      let pending = ''
      const queue: ServerSentEvent[] = []
      const waiters: ((event: ServerSentEvent) => void)[] = []
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        raw += chunk
        pending += chunk
        let end: number
        while ((end = pending.indexOf('\n\n')) !== -1) {
          const block = pending.slice(0, end)
          pending = pending.slice(end + 2)
          const event: ServerSentEvent = { event: 'message', data: '' }
          let hasData = false
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event.event = line.slice(7)
            if (line.startsWith('data: ')) {
              event.data = line.slice(6)
              hasData = true
            }
          }
          if (!hasData) continue // retry: lines and comments
          const waiter = waiters.shift()
          if (waiter) waiter(event)
          else queue.push(event)
        }
      })
      const ended = new Promise<void>((done) => {
        res.on('end', done)
        res.on('close', done)
        res.on('error', () => done())
      })
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        raw: () => raw,
        ended,
        close: () => req.destroy(),
        next: (timeoutMs = 3_000) =>
          new Promise((done, fail) => {
            const queued = queue.shift()
            if (queued) return done(queued)
            const timer = setTimeout(() => {
              waiters.splice(waiters.indexOf(waiter), 1)
              fail(new Error(`no event within ${timeoutMs} ms`))
            }, timeoutMs)
            const waiter = (event: ServerSentEvent) => {
              clearTimeout(timer)
              done(event)
            }
            waiters.push(waiter)
          }),
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** The next event named `name`, skipping others (but at most `limit` of them). */
export async function nextNamed(client: EventStreamClient, name: string, timeoutMs = 3_000, limit = 10): Promise<ServerSentEvent> {
  for (let i = 0; i < limit; i++) {
    const event = await client.next(timeoutMs)
    if (event.event === name) return event
  }
  throw new Error(`no ${name} event among the next ${limit}`)
}

/** Skips events until one named `name` carries `data`: for streams that may still show an older state first. */
export async function nextWithData(client: EventStreamClient, name: string, data: string, timeoutMs = 5_000, limit = 40): Promise<ServerSentEvent> {
  for (let i = 0; i < limit; i++) {
    const event = await client.next(timeoutMs)
    if (event.event === name && event.data === data) return event
  }
  throw new Error(`no ${name} event with ${data} among the next ${limit}`)
}
