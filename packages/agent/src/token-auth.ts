import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** The one route open without AGENT_TOKEN: a liveness probe, telling only the node id and whether Redis is up. */
const OPEN_ROUTES = new Set(['GET /health', 'HEAD /health'])

const BEARER = /^Bearer +(\S+) *$/i

export const MISSING_TOKEN = 'this agent needs its token (AGENT_TOKEN): send the header "Authorization: Bearer <token>"'
export const NOT_BEARER = 'the Authorization header must be "Bearer <token>" with the agent\'s AGENT_TOKEN'
export const WRONG_TOKEN = 'wrong token: the Bearer token is not this agent\'s AGENT_TOKEN'
export const REPEATED_HEADER = 'send one Authorization header, not several'

const digest = (text: string) => createHash('sha256').update(text).digest()

/**
 * An onRequest hook refusing with 401 every request but GET /health that lacks `Authorization: Bearer <token>`.
 * It runs before the body is read, so an unauthenticated client learns nothing about its body. Comparing SHA-256
 * digests (always 32 bytes) with timingSafeEqual keeps the time independent of the presented token and its length.
 * The messages never hold the presented or the expected token.
 */
export function requireToken(token: string) {
  const expected = digest(token)
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (OPEN_ROUTES.has(`${request.method} ${request.routeOptions.url}`)) return
    const problem = repeatedAuthorization(request.raw.rawHeaders) ? REPEATED_HEADER : checkAuthorization(request.headers.authorization, expected)
    if (problem === undefined) return
    return reply.code(401).header('www-authenticate', 'Bearer realm="tornado-agent"').send({ error: problem })
  }
}

/**
 * Node keeps the first of repeated Authorization headers and silently drops the rest, so a request carrying the
 * token and another value would be let in on whichever came first. Which one was meant is a guess: refuse, as the
 * API does a repeated x-api-key.
 */
function repeatedAuthorization(rawHeaders: string[]): boolean {
  let seen = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'authorization' && ++seen > 1) return true
  return false
}

function checkAuthorization(header: string | undefined, expected: Buffer): string | undefined {
  if (header === undefined || header.trim() === '') return MISSING_TOKEN
  const presented = BEARER.exec(header)?.[1]
  if (presented === undefined) return NOT_BEARER
  return timingSafeEqual(digest(presented), expected) ? undefined : WRONG_TOKEN
}

/** Whether a bound address is reachable from this host only (127.0.0.0/8, ::1, or either mapped into IPv6). */
export function isLoopback(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase()
  if (bare === '::1' || bare === 'localhost') return true
  const v4 = bare.startsWith('::ffff:') ? bare.slice('::ffff:'.length) : bare
  return isIP(v4) === 4 && v4.startsWith('127.')
}
