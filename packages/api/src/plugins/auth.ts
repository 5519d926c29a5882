import { timingSafeEqual } from 'node:crypto'
import { fastifyPlugin } from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ApiKeyStore, GENERATED_KEY_FORMAT } from '../api-keys.js'
import { coalesce } from '../coalesce.js'
import { sha256 } from '../config.js'
import { SESSION_COOKIE, sessionSigner, verifySessionToken } from '../session.js'

export interface AuthPluginOptions {
  /** SHA-256 digests of the keys in TORNADO_API_KEYS. */
  apiKeyDigests: Buffer[]
  /** TORNADO_PREFIX: keys made by `tornado-api keys create` live under `{<prefix>:keys}`. */
  keyPrefix: string
  /** Failed authentications one client address may make per window before it gets 429s. */
  failureLimit: number
  failureWindowMs?: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * onRequest hook: rejects with 401 a request without an accepted `x-api-key` header, or, for GET and HEAD
     * only and when no header is sent, without a valid session cookie; 429 once the client address failed too often.
     */
    verifyApiKey: (request: FastifyRequest) => Promise<void>
    /**
     * Calls onRevoked once when the Redis-managed key that let this request in (by its header or through a session
     * it made) is revoked, within about a second; keys from TORNADO_API_KEYS are never revoked while running.
     * Returns the function that stops watching.
     */
    watchRevocation: (request: FastifyRequest, onRevoked: () => void) => () => void
  }
  interface FastifyRequest {
    /** Set when the request was let in by a session cookie: when that session ends (ms since the epoch). */
    sessionExpiresAtMs?: number
    /** Set when the request was let in by its x-api-key header: the SHA-256 digest of that key. */
    apiKeyDigest?: Buffer
    /** Set when a Redis-managed key let the request in, directly or through a session: its hex SHA-256 digest. */
    revocableKeyDigest?: string
  }
}

/** A revoked Redis key stops working within this plus one Redis round trip (well under a second). */
export const KEY_CACHE_MS = 500
const DEFAULT_FAILURE_WINDOW_MS = 60_000
/** Bounds the memory an address-spraying client can make us spend on lockouts. */
const MAX_LOCKED_ADDRESSES = 10_000

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

interface RedisKeys {
  hex: Set<string>
  digests: Buffer[]
}

async function authPlugin(fastify: FastifyInstance, options: AuthPluginOptions) {
  const envDigests = [...options.apiKeyDigests]
  if (envDigests.length === 0) throw new Error('auth plugin needs at least one API key')
  const log = fastify.log.child({ component: 'auth' })
  const store = new ApiKeyStore(fastify.redis, options.keyPrefix)
  // Every request with a Redis key shares one read per KEY_CACHE_MS: revocation is seen by every replica that fast.
  const redisKeys = coalesce(async (): Promise<RedisKeys> => {
    const hex = await store.activeDigests()
    return { hex: new Set(hex), digests: hex.map((h) => Buffer.from(h, 'hex')) }
  }, KEY_CACHE_MS)
  const readRedisKeys = async (): Promise<RedisKeys> => {
    try {
      return await redisKeys()
    } catch (err) {
      fastify.redisAvailability.markDown((err as Error).message)
      // Fail closed: a key that might be revoked is not accepted from a stale copy.
      throw fastify.httpErrors.serviceUnavailable('Redis unavailable')
    }
  }

  // Only failures are counted (a good key never touches the limiter), so others' failures cannot slow it down.
  await fastify.register(fastifyRateLimit, { global: false })
  const windowMs = options.failureWindowMs ?? DEFAULT_FAILURE_WINDOW_MS
  const countFailure = fastify.createRateLimit({ max: options.failureLimit, timeWindow: windowMs, keyGenerator: (request) => request.ip })
  // Addresses past the limit, until when: while locked out even a right key is refused, or guessing would go on
  // at full speed with the 200 among the 429s giving the answer away.
  const lockedUntil = new Map<string, number>()
  const tooMany = (untilMs: number) => {
    const seconds = Math.max(1, Math.ceil((untilMs - Date.now()) / 1000))
    // Retry-After for clients and proxies that back off by it; the message says the same for people.
    return Object.assign(fastify.httpErrors.tooManyRequests(`Too many failed authentications from this address; retry in ${seconds} s`), {
      headers: { 'retry-after': String(seconds) },
    })
  }
  const fail = async (request: FastifyRequest, message: string): Promise<never> => {
    const limit = await countFailure(request)
    if (!limit.isAllowed && limit.isExceeded) {
      const untilMs = Date.now() + limit.ttl
      if (lockedUntil.size >= MAX_LOCKED_ADDRESSES) lockedUntil.delete(lockedUntil.keys().next().value!)
      if (!lockedUntil.has(request.ip)) log.warn({ address: request.ip, failures: options.failureLimit }, 'too many failed authentications: address locked out')
      lockedUntil.set(request.ip, untilMs)
      throw tooMany(untilMs)
    }
    throw fastify.httpErrors.unauthorized(message)
  }

  fastify.decorate('verifyApiKey', async (request: FastifyRequest) => {
    const locked = lockedUntil.get(request.ip)
    if (locked !== undefined) {
      if (locked > Date.now()) throw tooMany(locked)
      lockedUntil.delete(request.ip)
    }
    const header = request.headers['x-api-key']
    if (header === undefined || (typeof header === 'string' && header.trim() === '')) {
      // Reads only: a cookie rides along on any request the browser makes, so it must not unlock anything else.
      const session = request.cookies[SESSION_COOKIE]
      if (session !== undefined && (request.method === 'GET' || request.method === 'HEAD')) {
        const now = Date.now()
        const expiresAtMs = verifySessionToken(session, envDigests, now)
        if (expiresAtMs !== undefined) {
          request.sessionExpiresAtMs = expiresAtMs
          return
        }
        const byRedisKey = sessionSigner(session, (await readRedisKeys()).digests, now)
        if (byRedisKey !== undefined) {
          request.sessionExpiresAtMs = byRedisKey.expiresAtMs
          request.revocableKeyDigest = byRedisKey.keyDigest.toString('hex')
          return
        }
        // Not counted: forging a MAC is hopeless, and a browser's expired cookie must not lock its address out.
        throw fastify.httpErrors.unauthorized('Invalid or expired session')
      }
      throw fastify.httpErrors.unauthorized('Missing x-api-key header')
    }
    // A repeated header is ambiguous: which one was meant? Reject rather than guess.
    if (typeof header !== 'string') return fail(request, 'Invalid API Key')
    // Surrounding whitespace is not part of a key (HTTP strips it from header values anyway; inject does not).
    const key = header.trim()
    if (isAcceptedKey(key, envDigests)) {
      request.apiKeyDigest = sha256(key)
      return
    }
    // Only the shape `keys create` makes is looked up: with Redis away, other keys are plainly invalid, not 503s.
    if (GENERATED_KEY_FORMAT.test(key)) {
      const digest = sha256(key)
      const hex = digest.toString('hex')
      if ((await readRedisKeys()).hex.has(hex)) {
        request.apiKeyDigest = digest
        request.revocableKeyDigest = hex
        return
      }
    }
    return fail(request, 'Invalid API Key')
  })

  // Long-lived requests (event streams) let in by a Redis key: one shared check of the key set every KEY_CACHE_MS
  // while any is open, so a revocation reaches them as fast as it reaches new requests.
  const watchers = new Map<() => void, string>()
  let watchTimer: NodeJS.Timeout | undefined
  let checking = false
  const checkRevocations = async () => {
    if (checking) return
    checking = true
    try {
      const active = (await redisKeys()).hex
      for (const [onRevoked, digest] of watchers) {
        if (active.has(digest)) continue
        watchers.delete(onRevoked)
        onRevoked()
      }
    } catch {
      // Redis away: a revocation cannot be seen, and the streams carry no data meanwhile; checked again next time.
    } finally {
      checking = false
      if (watchers.size === 0) stopWatching()
    }
  }
  const stopWatching = () => {
    clearInterval(watchTimer)
    watchTimer = undefined
  }
  fastify.decorate('watchRevocation', (request: FastifyRequest, onRevoked: () => void) => {
    const digest = request.revocableKeyDigest
    if (digest === undefined) return () => {}
    // Its own function, so the same callback passed twice is still two watchers.
    const entry = () => onRevoked()
    watchers.set(entry, digest)
    watchTimer ??= setInterval(() => void checkRevocations(), KEY_CACHE_MS)
    return () => {
      watchers.delete(entry)
      if (watchers.size === 0) stopWatching()
    }
  })
  fastify.addHook('onClose', async () => {
    watchers.clear()
    stopWatching()
  })
}

export default fastifyPlugin(authPlugin, {
  name: 'tornado-auth',
  fastify: '5.x',
  dependencies: ['@fastify/sensible', '@fastify/cookie', 'tornado-redis'],
})
