import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/**
 * One log line per request, at a level chosen by its outcome. Fastify's own request logging writes two info lines
 * per request: with dashboards polling every second that is most of the log, and it hides what matters. Refused
 * authentications (401, 403) and server errors stay visible at the default level; the rest is debug (counts and latency are
 * in /metrics). The query string is left out: nothing of a client's should reach the log unasked.
 */
async function requestLogPlugin(fastify: FastifyInstance) {
  fastify.addHook('onResponse', async (request, reply) => logRequest(request, reply))
}

/** The one line; also called by frameworkErrors, whose replies (a URL that does not decode) run no hooks. */
export function logRequest(request: FastifyRequest, reply: FastifyReply): void {
  const status = reply.statusCode
  // 429 is debug: a locked-out client retrying would flood the log, and each lockout is logged once already.
  const level = status >= 500 ? 'warn' : status === 401 || status === 403 ? 'info' : 'debug'
  const path = request.url.split('?', 1)[0]
  request.log[level]({ method: request.method, path, status, ms: Math.round(reply.elapsedTime), remote: request.ip }, 'request')
}

export default fastifyPlugin(requestLogPlugin, { name: 'tornado-request-log', fastify: '5.x' })
