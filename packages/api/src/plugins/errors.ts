import type { Socket } from 'node:net'
import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ErrorBody } from '@tornado/shared'

/**
 * Every error leaves the API as {"error": "<message>"}. Messages of errors the code raised on purpose (HTTP errors,
 * Fastify's 4xx) are shown; anything else is a bug, logged in full and answered with a bare 500, so neither a stack
 * trace nor a Redis URL reaches a client.
 */
async function errorsPlugin(fastify: FastifyInstance) {
  fastify.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500
    if (error instanceof fastify.httpErrors.HttpError || (status >= 400 && status < 500)) {
      const body: ErrorBody = { error: error.message }
      return reply.code(status).send(body)
    }
    request.log.error({ err: error }, 'request failed')
    return reply.code(500).send({ error: 'Internal Server Error' } satisfies ErrorBody)
  })

  fastify.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = { error: `Route ${request.method} ${request.url} not found` }
    return reply.code(404).send(body)
  })
}

export default fastifyPlugin(errorsPlugin, { name: 'tornado-errors', fastify: '5.x', dependencies: ['@fastify/sensible'] })

/** Errors Fastify meets before routing (a URL that does not decode): same shape, same status. */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const body: ErrorBody = { error: error.message }
  reply.code(error.statusCode ?? 400).send(body)
}

/** Answers requests Node cannot even parse with the same {"error"} shape (Fastify's default adds other fields). */
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
