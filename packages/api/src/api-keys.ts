import { createHash, randomBytes } from 'node:crypto'
import type { RedisClient } from '@tornado/shared'

/**
 * API keys managed in Redis (`tornado-api keys ...`). Only SHA-256 digests of keys are stored, never a key: a Redis
 * dump or a MONITOR shows nothing that opens the API. Everything sits under one hash tag, `{<prefix>:keys}`, so a
 * create or revoke is one MULTI in one slot on Redis Cluster too:
 *   {<prefix>:keys}:by-digest   HASH  hex SHA-256 of a key -> key id   (what authentication looks up)
 *   {<prefix>:keys}:key:<id>    HASH  digest, name, created_ms         (what `keys list` shows)
 */
export const GENERATED_KEY_PREFIX = 'sk_'
/** What `keys create` hands out: sk_ and 32 random bytes (256 bits) in base64url. Only such keys are looked up in Redis. */
export const GENERATED_KEY_FORMAT = /^sk_[A-Za-z0-9_-]{43}$/
export const KEY_NAME_FORMAT = /^[\x20-\x7e]{1,100}$/
const KEY_ID_FORMAT = /^[0-9a-f]{16}$/

export interface ApiKeyInfo {
  id: string
  name: string
  createdAtMs: number
}

export const keyDigestHex = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex')

export function apiKeyRedisKeys(prefix: string) {
  const tag = `{${prefix}:keys}`
  return { byDigest: `${tag}:by-digest`, record: (id: string) => `${tag}:key:${id}` }
}

export class ApiKeyStore {
  private readonly keys: ReturnType<typeof apiKeyRedisKeys>

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.keys = apiKeyRedisKeys(prefix)
  }

  /** Stores a new random key's digest and returns the key: the only time it exists outside its holder. */
  async create(name: string, nowMs = Date.now()): Promise<ApiKeyInfo & { key: string }> {
    if (!KEY_NAME_FORMAT.test(name)) throw new RangeError('a key name is 1 to 100 printable ASCII characters')
    const id = randomBytes(8).toString('hex')
    const key = GENERATED_KEY_PREFIX + randomBytes(32).toString('base64url')
    const digest = keyDigestHex(key)
    const replies = await this.redis
      .multi()
      .hset(this.keys.record(id), 'digest', digest, 'name', name, 'created_ms', String(nowMs))
      .hset(this.keys.byDigest, digest, id)
      .exec()
    for (const [err] of replies ?? []) if (err) throw err
    return { id, name, createdAtMs: nowMs, key }
  }

  /** Every key's id, name and creation time, oldest first. Never the key: it is not stored. */
  async list(): Promise<ApiKeyInfo[]> {
    const ids = await this.redis.hvals(this.keys.byDigest)
    const records = await Promise.all(ids.map((id) => this.redis.hgetall(this.keys.record(id))))
    return ids
      .map((id, i) => ({ id, name: records[i]?.name ?? '', createdAtMs: Number(records[i]?.created_ms ?? 0) }))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1))
  }

  /** Revokes a key by id; false when there is no such key. */
  async revoke(id: string): Promise<boolean> {
    if (!KEY_ID_FORMAT.test(id)) return false
    const digest = await this.redis.hget(this.keys.record(id), 'digest')
    if (digest === null) return false
    const replies = await this.redis.multi().hdel(this.keys.byDigest, digest).del(this.keys.record(id)).exec()
    for (const [err] of replies ?? []) if (err) throw err
    return true
  }

  /** Hex digests of every active key. */
  async activeDigests(): Promise<string[]> {
    return this.redis.hkeys(this.keys.byDigest)
  }
}
