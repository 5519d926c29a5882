import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ErrorBody } from '@tornado/shared'
import { logRequest } from './request-log.js'

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
      // Headers an HTTP error carries (Retry-After on a 429), as Fastify's own handler would send them.
      const { headers } = error as { headers?: Record<string, string> }
      if (headers) reply.headers(headers)
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
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const body: ErrorBody = { error: error.message }
  reply.code(error.statusCode ?? 400).send(body)
  logRequest(request, reply)
}

export { clientErrorHandler } from '@tornado/shared'
