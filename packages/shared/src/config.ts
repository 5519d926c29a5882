import { Type, type TObject, type TSchema, type Static } from 'typebox'
import { Value } from 'typebox/value'

/** A configuration error: its message names the variable and what is wrong, and never echoes a secret's value. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

export type Env = Record<string, string | undefined>

/**
 * Reads the variables `schema` names from `env`, converts them (numbers, booleans), applies defaults and
 * validates them. Property names of the schema are the variable names. An empty variable counts as unset.
 */
export function readEnv<S extends TObject>(schema: S, env: Env): Static<S> {
  const raw: Record<string, unknown> = {}
  for (const name of Object.keys(schema.properties)) {
    const value = env[name]
    if (value !== undefined && value !== '') raw[name] = value
  }
  const converted = Value.Default(schema, raw) as Record<string, unknown>
  for (const [name, property] of Object.entries(schema.properties) as [string, TSchema][]) {
    const value = converted[name]
    if (value === undefined) {
      if ((schema.required ?? []).includes(name)) throw new ConfigError(`${name} is required`)
      continue
    }
    const typed = typeof value === 'string' ? fromText(property, value) : value
    converted[name] = typed
    if (typed === undefined || !Value.Check(property, typed)) {
      const shown = (property as { secret?: boolean }).secret ? '(value hidden)' : JSON.stringify(env[name])
      throw new ConfigError(`${name}=${shown} is invalid: ${describe(property)}`)
    }
  }
  return converted as Static<S>
}

/** Strict conversion from an environment string: '3.5' is not an integer, 'yes' is not a number. */
function fromText(schema: TSchema, text: string): unknown {
  const type = (schema as { type?: unknown }).type
  if (type === 'integer') return /^-?\d+$/.test(text.trim()) ? Number(text) : undefined
  if (type === 'number') return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : undefined
  if (type === 'boolean') {
    const lowered = text.trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(lowered)) return true
    if (['0', 'false', 'no', 'off'].includes(lowered)) return false
    return undefined
  }
  return text
}

function describe(schema: TSchema): string {
  const s = schema as Record<string, unknown>
  if (typeof s.description === 'string') return s.description
  return `expected ${String(s.type ?? 'a valid value')}`
}

/** `host:port` as AGENT_LISTEN and similar variables take it. */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text)
  const port = Number(match?.[3])
  if (!match || port > 65535) throw new ConfigError(`expected host:port, got ${JSON.stringify(text)}`)
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port }
}

/**
 * Shown in logs instead of a Redis URL: the password replaced (the user name stays, to tell ACL users apart), and
 * every query value too: ioredis takes any connection option from the query, so `?password=` and
 * `?sentinelPassword=` authenticate as well as the user-info part does.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    // Rebuilt by hand: URLSearchParams would encode the asterisks.
    const names = [...parsed.searchParams.keys()]
    if (names.length > 0) parsed.search = names.map((name) => `${encodeURIComponent(name)}=***`).join('&')
    return parsed.toString()
  } catch {
    return '(unparseable URL)'
  }
}

/** Variables both processes read to reach the heartbeat store. */
export const StoreEnv = {
  REDIS_URL: Type.String({
    default: 'redis://127.0.0.1:6379',
    pattern: '^(redis|rediss)://',
    description: 'a redis:// or rediss:// URL, e.g. redis://:password@host:6379/0',
    secret: true,
  }),
  TORNADO_PREFIX: Type.String({
    default: 'tornado',
    pattern: '^[A-Za-z0-9_.:-]{1,64}$',
    description: 'letters, digits and _ . : - (1 to 64 characters)',
  }),
  TORNADO_SHARDS: Type.Integer({
    default: 1,
    minimum: 1,
    maximum: 1024,
    description: 'an integer from 1 to 1024; the same on every agent and API',
  }),
  STALE_AFTER_MS: Type.Integer({
    default: 30_000,
    minimum: 1_000,
    maximum: 3_600_000,
    description: 'milliseconds, an integer from 1000 to 3600000',
  }),
}
