import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { KeyRequired, RedisUnavailable, SessionBody, TooManyFailures } from '../route-schemas.js'
import { createSessionToken, SESSION_COOKIE, SESSION_TTL_MS } from '../session.js'

const cookieOptions = (request: FastifyRequest) => ({
  path: '/dashboard',
  httpOnly: true,
  sameSite: 'strict' as const,
  // Behind plain http (a laptop, a test) a Secure cookie would never come back.
  secure: request.protocol === 'https',
})

/**
 * `POST /dashboard/session` turns an x-api-key header into a short-lived session cookie for the browser page (an
 * EventSource cannot send headers); `DELETE /dashboard/session` clears it. See session.ts for the token.
 */
const dashboardSessionRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post(
    '/dashboard/session',
    {
      schema: {
        tags: ['session'],
        summary: 'Start a browser session',
        description:
          `Needs the x-api-key header (a cookie is not enough). Sets the HttpOnly, SameSite=Strict cookie \`${SESSION_COOKIE}\` on Path=/dashboard, ` +
          `valid for ${SESSION_TTL_MS / 60_000} minutes, which every /dashboard/* GET accepts in place of the header. ` +
          'The token is stateless: any API replica with the same key accepts it, and removing the key invalidates it.',
        security: [{ apiKey: [] }],
        response: { 200: SessionBody, 401: KeyRequired, 429: TooManyFailures, 503: RedisUnavailable },
      },
      onRequest: fastify.verifyApiKey,
    },
    async (request, reply) => {
      // verifyApiKey accepted the header (a cookie cannot reach a POST) and noted its key's digest.
      const keyDigest = request.apiKeyDigest!
      const token = createSessionToken(keyDigest, Date.now() + SESSION_TTL_MS)
      reply.setCookie(SESSION_COOKIE, token, { ...cookieOptions(request), maxAge: SESSION_TTL_MS / 1000 })
      return { expires_in_ms: SESSION_TTL_MS }
    },
  )

  fastify.delete(
    '/dashboard/session',
    {
      schema: {
        tags: ['session'],
        summary: 'End the browser session',
        description: 'Clears the session cookie. Needs no credential: forgetting one is always allowed.',
        response: { 204: Type.Null({ description: 'Cookie cleared' }) },
      },
    },
    async (request, reply) => {
      reply.clearCookie(SESSION_COOKIE, cookieOptions(request))
      return reply.code(204).send(null)
    },
  )
}

export default dashboardSessionRoutes
