import { once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** What Node's HTTP server answers a client that did not send its whole request in time (clientErrorHandler's body). */
export const REQUEST_TIMEOUT_REPLY =
  'HTTP/1.1 408 Request Timeout\r\nContent-Length: 27\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":"Request Timeout"}'

/**
 * Sends raw `text` (often an unfinished request) to 127.0.0.1:port and resolves with what came back, whether the
 * server closed the connection within limitMs, and when.
 */
export async function sendAndWait(port: number, text: string, limitMs: number) {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  let received = ''
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
  await once(socket, 'connect')
  const sentAt = Date.now()
  socket.write(text)
  const closed = await Promise.race([once(socket, 'close').then(() => true), sleep(limitMs, false)])
  socket.destroy()
  return { closed, afterMs: Date.now() - sentAt, received }
}
