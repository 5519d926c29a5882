import t from 'tap'
import { Type } from 'typebox'
import { ConfigError, parseHostPort, readEnv, redactUrl, StoreEnv } from '../src/index.js'

const schema = Type.Object({
  ...StoreEnv,
  PORT: Type.Integer({ default: 3000, minimum: 1, maximum: 65535, description: 'a TCP port, 1 to 65535' }),
  SECRET_KEYS: Type.String({ minLength: 1, secret: true, description: 'comma-separated keys' }),
})

t.test('defaults, conversions and empty values', async (t) => {
  t.same(readEnv(schema, { SECRET_KEYS: 'k', PORT: '', UNRELATED: 'x' }), {
    REDIS_URL: 'redis://127.0.0.1:6379',
    TORNADO_PREFIX: 'tornado',
    TORNADO_SHARDS: 1,
    STALE_AFTER_MS: 30000,
    PORT: 3000,
    SECRET_KEYS: 'k',
  })
  t.equal(readEnv(schema, { SECRET_KEYS: 'k', PORT: '8080' }).PORT, 8080)
})

t.test('a bad variable is named, a secret is never shown', async (t) => {
  t.throws(() => readEnv(schema, { SECRET_KEYS: 'k', PORT: 'eighty' }), new ConfigError('PORT="eighty" is invalid: a TCP port, 1 to 65535'))
  t.throws(() => readEnv(schema, { SECRET_KEYS: 'k', PORT: '3.5' }), /^PORT="3.5" is invalid/)
  t.throws(() => readEnv(schema, { SECRET_KEYS: 'k', STALE_AFTER_MS: '10' }), /^STALE_AFTER_MS="10" is invalid: milliseconds/)
  t.throws(() => readEnv(schema, {}), new ConfigError('SECRET_KEYS is required'))
  t.throws(() => readEnv(schema, { SECRET_KEYS: 'k', TORNADO_PREFIX: 'a b' }), /^TORNADO_PREFIX="a b" is invalid/)
  const err = t.throws(() => readEnv(schema, { SECRET_KEYS: 'k', REDIS_URL: 'http://:hunter2@x' })) as Error
  t.equal(err.message, 'REDIS_URL=(value hidden) is invalid: a redis:// or rediss:// URL, e.g. redis://:password@host:6379/0')
})

t.test('host:port and redaction', async (t) => {
  t.same(parseHostPort('127.0.0.1:7071'), { host: '127.0.0.1', port: 7071 })
  t.same(parseHostPort('[::1]:7071'), { host: '::1', port: 7071 })
  t.same(parseHostPort(':7071'), { host: '127.0.0.1', port: 7071 })
  t.throws(() => parseHostPort('7071'), /expected host:port/)
  t.throws(() => parseHostPort('host:70000'), /expected host:port/)
  t.equal(redactUrl('redis://user:hunter2@redis:6379/0'), 'redis://user:***@redis:6379/0')
  t.equal(redactUrl('redis://redis:6379'), 'redis://redis:6379')
  // ioredis authenticates with a password given in the query string too (verified against a real Redis).
  t.equal(redactUrl('redis://redis:6379/0?password=hunter2'), 'redis://redis:6379/0?password=***')
  t.equal(redactUrl('redis://:pw@redis:6379?sentinelPassword=hunter2&family=6'), 'redis://:***@redis:6379?sentinelPassword=***&family=***')
  t.equal(redactUrl('redis://u:6520#Sup3rSecret@127.0.0.1:6520'), 'redis://u:6520', 'nothing after a #')
  t.equal(redactUrl('redis://h/0?password=pa#ss-SECRET'), 'redis://h/0?password=***')
  t.equal(redactUrl('not a url'), '(unparseable URL)')
})

t.test('booleans', async (t) => {
  const flags = Type.Object({ FLAG: Type.Boolean({ default: false, description: '1/0, true/false, yes/no, on/off' }) })
  t.same(readEnv(flags, {}), { FLAG: false })
  t.same(readEnv(flags, { FLAG: 'yes' }), { FLAG: true })
  t.same(readEnv(flags, { FLAG: '0' }), { FLAG: false })
  t.throws(() => readEnv(flags, { FLAG: 'maybe' }), new ConfigError('FLAG="maybe" is invalid: 1/0, true/false, yes/no, on/off'))
})
