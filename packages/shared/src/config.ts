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
  refuseUnknownVariables(Object.keys(schema.properties), env)
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

/** Prefixes of the project's own variables: a name under one of them that no Tornado process reads is a mistake. */
export const OWN_PREFIXES = ['TORNADO_', 'AGENT_'] as const

/**
 * Every variable under OWN_PREFIXES that some Tornado process reads. One process accepts the others' names, so an
 * environment file shared by the agent and the API (compose, the demo, one .env) starts both. Each package's config
 * test checks that its schema's names are here.
 */
export const FLEET_VARIABLES: ReadonlySet<string> = new Set([
  'TORNADO_PREFIX',
  'TORNADO_SHARDS',
  'TORNADO_API_KEYS',
  'TORNADO_NODE_ID',
  'TORNADO_SIMULATE',
  'TORNADO_WATCH_PROCESSES',
  'TORNADO_PROCESS_RULES',
  'AGENT_LISTEN',
  'AGENT_TOKEN',
])

// What Kubernetes injects for a Service named e.g. tornado-api (TORNADO_API_SERVICE_HOST, TORNADO_API_PORT_3000_TCP...).
const KUBERNETES_SERVICE_LINK = /_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$/

/**
 * A misspelt variable (TORNADO_SHRADS=4) would otherwise be ignored in silence and its default used: a name under
 * our prefixes that no Tornado process reads stops start-up, naming it and the closest real one.
 */
function refuseUnknownVariables(known: string[], env: Env): void {
  for (const name of Object.keys(env).sort()) {
    if (!OWN_PREFIXES.some((prefix) => name.startsWith(prefix))) continue
    if (known.includes(name) || FLEET_VARIABLES.has(name) || KUBERNETES_SERVICE_LINK.test(name)) continue
    const candidates = [...new Set([...known, ...FLEET_VARIABLES])]
    const [closest] = candidates
      .map((candidate) => ({ candidate, distance: editDistance(name, candidate) }))
      .filter(({ distance }) => distance <= 3)
      .sort((a, b) => a.distance - b.distance)
    const hint = closest ? ` (did you mean ${closest.candidate}?)` : ''
    throw new ConfigError(`${name} is not a Tornado variable${hint}; unset it, or see --help for the variables`)
  }
}

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}

/**
 * The `--help` lines for a schema's variables, so they cannot drift from it: name, description, and the default
 * ("unset" for an optional variable without one, "required" for one that must be given).
 */
export function describeVariables(schema: TObject): string[] {
  const width = Math.max(...Object.keys(schema.properties).map((name) => name.length)) + 2
  return Object.entries(schema.properties).map(([name, property]) => {
    const { default: fallback, description } = property as { default?: unknown; description?: string }
    const required = fallback === undefined && (schema.required ?? []).includes(name)
    const shown = fallback !== undefined ? `default: ${String(fallback)}` : required ? 'required' : 'default: unset'
    // A description that states its own default ("default: the hostname") says it better than "unset".
    const suffix = fallback === undefined && !required && description?.includes('default:') ? '' : ` (${shown})`
    return `  ${name.padEnd(width)}${description ?? ''}${suffix}`
  })
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
    // Anything after a '#' is no part of the connection, and may be the rest of a password written with a bare #.
    parsed.hash = ''
    // Rebuilt by hand: URLSearchParams would encode the asterisks.
    const names = [...parsed.searchParams.keys()]
    if (names.length > 0) parsed.search = names.map((name) => `${encodeURIComponent(name)}=***`).join('&')
    return parsed.toString()
  } catch {
    return '(unparseable URL)'
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** LOG_LEVEL, read the same way by both processes. */
export const LogLevelEnv = {
  LOG_LEVEL: Type.Union(
    LOG_LEVELS.map((level) => Type.Literal(level)),
    { default: 'info', description: `one of ${LOG_LEVELS.join(', ')}` },
  ),
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
