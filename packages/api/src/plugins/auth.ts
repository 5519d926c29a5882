import { timingSafeEqual } from 'node:crypto'
import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { sha256 } from '../config.js'
import { SESSION_COOKIE, verifySessionToken } from '../session.js'

export interface AuthPluginOptions {
  /** SHA-256 digests of the accepted keys. */
  apiKeyDigests: Buffer[]
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * onRequest hook: rejects with 401 a request without an accepted `x-api-key` header, or, for GET and HEAD
     * only and when no header is sent, without a valid session cookie.
     */
    verifyApiKey: (request: FastifyRequest) => Promise<void>
  }
  interface FastifyRequest {
    /** Set when the request was let in by a session cookie: when that session ends (ms since the epoch). */
    sessionExpiresAtMs?: number
  }
}

/**
 * Comparing equal-length digests with timingSafeEqual against every key, without stopping at a match, keeps the
 * time spent independent of the presented key, its length and which key (if any) it matches.
 */
export function isAcceptedKey(presented: string, digests: readonly Buffer[]): boolean {
  const digest = sha256(presented)
  let accepted = false
  for (const candidate of digests) accepted = timingSafeEqual(digest, candidate) || accepted
  return accepted
}

async function authPlugin(fastify: FastifyInstance, options: AuthPluginOptions) {
  const digests = [...options.apiKeyDigests]
  if (digests.length === 0) throw new Error('auth plugin needs at least one API key')

  fastify.decorate('verifyApiKey', async (request: FastifyRequest) => {
    const header = request.headers['x-api-key']
    if (header === undefined || (typeof header === 'string' && header.trim() === '')) {
      // Reads only: a cookie rides along on any request the browser makes, so it must not unlock anything else.
      const session = request.cookies[SESSION_COOKIE]
      if (session !== undefined && (request.method === 'GET' || request.method === 'HEAD')) {
        const expiresAtMs = verifySessionToken(session, digests, Date.now())
        if (expiresAtMs !== undefined) {
          request.sessionExpiresAtMs = expiresAtMs
          return
        }
        throw fastify.httpErrors.unauthorized('Invalid or expired session')
      }
      throw fastify.httpErrors.unauthorized('Missing x-api-key header')
    }
    // A repeated header is ambiguous: which one was meant? Reject rather than guess.
    if (typeof header !== 'string' || !isAcceptedKey(header, digests)) {
      throw fastify.httpErrors.unauthorized('Invalid API Key')
    }
  })
}

export default fastifyPlugin(authPlugin, {
  name: 'tornado-auth',
  fastify: '5.x',
  dependencies: ['@fastify/sensible', '@fastify/cookie'],
})
