import type { Socket } from 'node:net'
import type { ErrorBody } from './schemas.js'

/**
 * A Fastify clientErrorHandler answering requests Node cannot even parse (a header block over 16 KiB, a garbled
 * request line) with the {"error"} shape every other answer has; Fastify's default adds "message" and "statusCode".
 * Both processes' HTTP servers use it.
 */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, text] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large']
        : [400, 'Bad Request']
  const body = JSON.stringify({ error: text } satisfies ErrorBody)
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}
