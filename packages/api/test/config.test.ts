import t from 'tap'
import { ConfigError, FLEET_VARIABLES, OWN_PREFIXES } from '@tornado/shared'
import { sha256 } from '../src/config.js'
import { ApiEnv, describeConfig, loadApiConfig } from '../src/index.js'

const base = { TORNADO_API_KEYS: 'sk_one' }

/** The ConfigError message loadApiConfig throws for env, or a failure when it does not throw one. */
function configError(env: Record<string, string>): string {
  try {
    loadApiConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error(`no ConfigError for ${JSON.stringify(Object.keys(env))}`)
}

t.test('defaults', async (t) => {
  t.same(loadApiConfig(base), {
    redisUrl: 'redis://127.0.0.1:6379',
    layout: { prefix: 'tornado', shards: 1 },
    staleAfterMs: 30_000,
    totalsCacheMs: 250,
    onlineWithinMs: 5_000,
    apiKeyDigests: [sha256('sk_one')],
    authFailureLimit: 20,
    port: 3000,
    host: '0.0.0.0',
    logLevel: 'info',
    metricsEnabled: true,
  })
})

t.test('every variable set', async (t) => {
  const config = loadApiConfig({
    REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
    TORNADO_PREFIX: 'prod-eu',
    TORNADO_SHARDS: '8',
    STALE_AFTER_MS: '15000',
    TORNADO_API_KEYS: 'a,b , c',
    TOTALS_CACHE_MS: '0',
    ONLINE_WITHIN_MS: '4000',
    AUTH_FAILURE_LIMIT: '5',
    PORT: '8080',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    METRICS_ENABLED: 'off',
    UNRELATED: 'ignored',
  })
  t.same(config, {
    redisUrl: 'rediss://user:pw@redis.internal:6380/2',
    layout: { prefix: 'prod-eu', shards: 8 },
    staleAfterMs: 15_000,
    totalsCacheMs: 0,
    onlineWithinMs: 4_000,
    apiKeyDigests: [sha256('a'), sha256('b'), sha256('c')],
    authFailureLimit: 5,
    port: 8080,
    host: '127.0.0.1',
    logLevel: 'warn',
    metricsEnabled: false,
  })
})

t.test('keys are trimmed, empty entries and duplicates dropped, and never kept in clear', async (t) => {
  const config = loadApiConfig({ TORNADO_API_KEYS: ' sk_secret_1 ,,sk_secret_2,sk_secret_1, ' })
  t.same(config.apiKeyDigests, [sha256('sk_secret_1'), sha256('sk_secret_2')])
  t.notOk(JSON.stringify(config).includes('sk_secret'))
})

t.test('describeConfig: the Redis password redacted, keys only counted', async (t) => {
  const config = loadApiConfig({ REDIS_URL: 'redis://:hunter2@cache:6379/0', TORNADO_API_KEYS: 'sk_x,sk_y' })
  const described = describeConfig(config)
  t.same(described, {
    redisUrl: 'redis://:***@cache:6379/0',
    prefix: 'tornado',
    shards: 1,
    staleAfterMs: 30_000,
    totalsCacheMs: 250,
    onlineWithinMs: 5_000,
    apiKeys: 2,
    authFailureLimit: 20,
    host: '0.0.0.0',
    port: 3000,
    logLevel: 'info',
    metricsEnabled: true,
  })
  t.notOk(JSON.stringify(described).includes('hunter2'))
  t.notOk(JSON.stringify(described).includes('sk_x'))
})

t.test('errors name the variable', async (t) => {
  t.equal(configError({}), 'TORNADO_API_KEYS is required')
  t.equal(configError({ TORNADO_API_KEYS: '' }), 'TORNADO_API_KEYS is required')
  t.equal(
    configError({ TORNADO_API_KEYS: ' , ,' }),
    'TORNADO_API_KEYS=(value hidden) is invalid: comma-separated API keys accepted in the x-api-key header (at least one)',
  )
  t.equal(
    configError({ ...base, METRICS_ENABLED: 'maybe' }),
    'METRICS_ENABLED="maybe" is invalid: serve GET /metrics (Prometheus text, no API key needed): 1/true/on or 0/false/off',
  )
  t.equal(configError({ ...base, PORT: 'abc' }), 'PORT="abc" is invalid: a TCP port from 0 to 65535 (0: any free port)')
  t.equal(configError({ ...base, PORT: '70000' }), 'PORT="70000" is invalid: a TCP port from 0 to 65535 (0: any free port)')
  t.equal(configError({ ...base, PORT: '80.5' }), 'PORT="80.5" is invalid: a TCP port from 0 to 65535 (0: any free port)')
  t.equal(
    configError({ ...base, LOG_LEVEL: 'loud' }),
    'LOG_LEVEL="loud" is invalid: one of fatal, error, warn, info, debug, trace, silent',
  )
  t.equal(
    configError({ ...base, STALE_AFTER_MS: '10' }),
    'STALE_AFTER_MS="10" is invalid: milliseconds, an integer from 1000 to 3600000',
  )
  t.equal(
    configError({ ...base, TORNADO_SHARDS: '0' }),
    'TORNADO_SHARDS="0" is invalid: an integer from 1 to 1024; the same on every agent and API',
  )
})

t.test('ONLINE_WITHIN_MS: its default yields to a shorter STALE_AFTER_MS, a value set above it is refused', async (t) => {
  t.equal(loadApiConfig({ ...base, STALE_AFTER_MS: '3000' }).onlineWithinMs, 3_000)
  t.equal(loadApiConfig({ ...base, ONLINE_WITHIN_MS: '30000' }).onlineWithinMs, 30_000, 'equal is fine')
  t.equal(
    configError({ ...base, ONLINE_WITHIN_MS: '30001' }),
    'ONLINE_WITHIN_MS="30001" is invalid: at most STALE_AFTER_MS (30000), since a node older than that is gone',
  )
  t.equal(
    configError({ ...base, ONLINE_WITHIN_MS: '50' }),
    'ONLINE_WITHIN_MS="50" is invalid: milliseconds: a node whose last heartbeat is younger is shown online, older ones stale; 100 to 3600000, at most STALE_AFTER_MS (the default yields to it)',
  )
})

t.test('a bad REDIS_URL is named, its password never shown', async (t) => {
  const wrongScheme = configError({ ...base, REDIS_URL: 'http://:hunter2@cache:6379' })
  t.equal(wrongScheme, 'REDIS_URL=(value hidden) is invalid: a redis:// or rediss:// URL, e.g. redis://:password@host:6379/0')
  const unparseable = configError({ ...base, REDIS_URL: 'redis://:hunter2@cache:99999' })
  t.equal(unparseable, 'REDIS_URL=(value hidden) is invalid: not a parseable URL, e.g. redis://:password@host:6379/0')
  const badEscape = configError({ ...base, REDIS_URL: 'redis://:%ZZhunter2@cache:6379' })
  t.equal(badEscape, 'REDIS_URL=(value hidden) is invalid: its user or password holds a malformed %-escape (write a % as %25)')
  const badDatabase = configError({ ...base, REDIS_URL: 'redis://:hunter2@cache:6379/?db=x' })
  t.equal(badDatabase, 'REDIS_URL=(value hidden) is invalid: its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0')
  t.notOk(`${wrongScheme}${unparseable}${badEscape}${badDatabase}`.includes('hunter2'))
})

t.test("the API's own-prefixed variables are all in FLEET_VARIABLES (the agent accepts them in a shared environment)", async (t) => {
  const own = Object.keys(ApiEnv.properties).filter((name) => OWN_PREFIXES.some((prefix) => name.startsWith(prefix)))
  t.same(own.filter((name) => !FLEET_VARIABLES.has(name)), [])
})

t.test('a misspelt variable of ours stops start-up; the agent\'s variables in a shared environment do not', async (t) => {
  t.equal(configError({ ...base, TORNADO_API_KEY: 'sk_two' }), 'TORNADO_API_KEY is not a Tornado variable (did you mean TORNADO_API_KEYS?); unset it, or see --help for the variables')
  t.equal(loadApiConfig({ ...base, TORNADO_NODE_ID: 'n1', AGENT_TOKEN: 'x'.repeat(32), AGENT_LISTEN: '0.0.0.0:7071' }).port, 3000)
})
