import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Dashboard sessions, for browsers: an EventSource cannot send an x-api-key header, and a key in a URL would end up
 * in access logs and browser history. `POST /dashboard/session` (with the key in the header) sets an HttpOnly cookie
 * holding `<expiry ms>.<HMAC-SHA256 of the expiry>`, keyed by the SHA-256 digest of the key that asked for it.
 * Stateless: any replica configured with that key accepts the token, and removing the key from TORNADO_API_KEYS
 * invalidates every token it made, as revoking a Redis-managed key does (and ends the streams its tokens opened).
 * Nothing is stored, so a token cannot be revoked on its own, only with its key: keep it short.
 */
export const SESSION_COOKIE = 'tornado_session'
export const SESSION_TTL_MS = 15 * 60_000
/** How far another replica's clock may run behind ours when it issued a token. */
const CLOCK_SKEW_MS = 60_000
/** Expiry in ms since the epoch (13 digits until the year 2286), a dot, 32 bytes of MAC in base64url. */
const TOKEN_FORMAT = /^(\d{13})\.([A-Za-z0-9_-]{43})$/

/** The MAC as base64url text: compared as text, so a token has exactly one valid spelling. */
const mac = (keyDigest: Buffer, expiresAtMs: number): string =>
  createHmac('sha256', keyDigest).update(`tornado-session-v1:${expiresAtMs}`).digest('base64url')

export function createSessionToken(keyDigest: Buffer, expiresAtMs: number): string {
  return `${expiresAtMs}.${mac(keyDigest, expiresAtMs)}`
}

/**
 * The token's expiry (ms since the epoch) when it is unexpired, not dated further ahead than a fresh one could be,
 * and signed with one of the digests; else undefined.
 */
export function verifySessionToken(token: string, keyDigests: readonly Buffer[], nowMs: number): number | undefined {
  return sessionSigner(token, keyDigests, nowMs)?.expiresAtMs
}

/**
 * As verifySessionToken, with the digest of the key that signed the token: a stream opened with the session ends
 * when that key is revoked. Every digest is tried without stopping at a match, each comparison in constant time,
 * so the time taken says nothing about which key (if any) made the token.
 */
export function sessionSigner(
  token: string,
  keyDigests: readonly Buffer[],
  nowMs: number,
): { expiresAtMs: number; keyDigest: Buffer } | undefined {
  const match = TOKEN_FORMAT.exec(token)
  if (!match) return undefined
  const expiresAtMs = Number(match[1])
  const presented = Buffer.from(match[2]!, 'latin1')
  let signer: Buffer | undefined
  for (const digest of keyDigests) {
    const signed = timingSafeEqual(presented, Buffer.from(mac(digest, expiresAtMs), 'latin1'))
    signer = signed ? digest : signer
  }
  const fresh = expiresAtMs > nowMs && expiresAtMs <= nowMs + SESSION_TTL_MS + CLOCK_SKEW_MS
  return signer && fresh ? { expiresAtMs, keyDigest: signer } : undefined
}
