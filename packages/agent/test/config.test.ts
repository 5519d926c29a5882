import t from 'tap'
import { ConfigError } from '@tornado/shared'
import { describeVariables, FLEET_VARIABLES, OWN_PREFIXES } from '@tornado/shared'
import { AgentEnv, DEFAULT_PROCESS_RULES, loadConfig, nodeIdFromHostname } from '../src/index.js'

const TOKEN_RULE =
  'a secret of 16 to 256 printable ASCII characters, no spaces (e.g. openssl rand -hex 32); when set, every local route but GET /health needs "Authorization: Bearer <token>"'

const load = (env: Record<string, string>, simulate?: boolean) => loadConfig(env, { hostname: 'worker-7.example.com', simulate })

t.test('defaults', async (t) => {
  t.same(load({}), {
    redisUrl: 'redis://127.0.0.1:6379',
    layout: { prefix: 'tornado', shards: 1 },
    staleAfterMs: 30_000,
    nodeId: 'worker-7.example.com',
    intervalMs: 1000,
    listen: { host: '127.0.0.1', port: 7071 },
    token: undefined,
    simulate: false,
    watchProcesses: false,
    processRules: DEFAULT_PROCESS_RULES,
    processRulesFile: undefined,
    logLevel: 'info',
  })
})

t.test('every variable is read', async (t) => {
  t.same(
    load({
      REDIS_URL: 'redis://:pw@cache:6380/2',
      TORNADO_PREFIX: 'tn',
      TORNADO_SHARDS: '8',
      STALE_AFTER_MS: '5000',
      TORNADO_NODE_ID: 'gpu-box@rack1',
      HEARTBEAT_INTERVAL_MS: '250',
      AGENT_LISTEN: '0.0.0.0:9000',
      AGENT_TOKEN: 'a'.repeat(16),
      TORNADO_SIMULATE: 'true',
      TORNADO_WATCH_PROCESSES: '1',
      LOG_LEVEL: 'debug',
    }),
    {
      redisUrl: 'redis://:pw@cache:6380/2',
      layout: { prefix: 'tn', shards: 8 },
      staleAfterMs: 5000,
      nodeId: 'gpu-box@rack1',
      intervalMs: 250,
      listen: { host: '0.0.0.0', port: 9000 },
      token: 'a'.repeat(16),
      simulate: true,
      watchProcesses: true,
      processRules: DEFAULT_PROCESS_RULES,
      processRulesFile: undefined,
      logLevel: 'debug',
    },
  )
  t.equal(load({ TORNADO_WATCH_PROCESSES: 'false' }).watchProcesses, false)
  t.equal(loadConfig({}, { hostname: 'h', watchProcesses: true }).watchProcesses, true, '--watch-processes')
  t.equal(load({ TORNADO_SIMULATE: '1' }).simulate, true)
  t.equal(load({ TORNADO_SIMULATE: '0' }).simulate, false)
  t.equal(load({ TORNADO_SIMULATE: 'false' }).simulate, false)
  t.equal(load({ TORNADO_SIMULATE: '0' }, true).simulate, true, '--simulate wins')
  t.same(load({ AGENT_LISTEN: '[::1]:7071' }).listen, { host: '::1', port: 7071 })
  t.same(load({ REDIS_CLUSTER_NODES: 'redis-a:7000,10.0.0.2:7001,[fd00::3]:7002' }).redisClusterNodes, [
    { host: 'redis-a', port: 7000 },
    { host: '10.0.0.2', port: 7001 },
    { host: 'fd00::3', port: 7002 },
  ])
  t.equal(load({ REDIS_CLUSTER_NODES: '' }).redisClusterNodes, undefined, 'empty: a single Redis at REDIS_URL')
  t.same(load({ REDIS_SENTINELS: 's1:26379,10.0.0.9:26380' }).redisSentinel, {
    nodes: [
      { host: 's1', port: 26379 },
      { host: '10.0.0.9', port: 26380 },
    ],
    name: 'mymaster',
  })
  t.same(load({ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'tornado', REDIS_SENTINEL_PASSWORD: 'sentinel-pw' }).redisSentinel, {
    nodes: [{ host: 's1', port: 26379 }],
    name: 'tornado',
    password: 'sentinel-pw',
  })
  t.equal(load({ REDIS_SENTINEL_NAME: 'tornado' }).redisSentinel, undefined, 'no REDIS_SENTINELS: no Sentinel')
  t.equal(load({ AGENT_TOKEN: '' }).token, undefined, 'an empty AGENT_TOKEN is unset')
  t.equal(load({ AGENT_TOKEN: 'x'.repeat(256) }).token, 'x'.repeat(256))
})

t.test('a bad variable stops start-up with a message naming it', async (t) => {
  const cases: [Record<string, string>, string][] = [
    [{ HEARTBEAT_INTERVAL_MS: '99' }, 'HEARTBEAT_INTERVAL_MS="99" is invalid: milliseconds between heartbeats, an integer from 100 to 60000'],
    [{ HEARTBEAT_INTERVAL_MS: '60001' }, 'HEARTBEAT_INTERVAL_MS="60001" is invalid: milliseconds between heartbeats, an integer from 100 to 60000'],
    [{ HEARTBEAT_INTERVAL_MS: '1s' }, 'HEARTBEAT_INTERVAL_MS="1s" is invalid: milliseconds between heartbeats, an integer from 100 to 60000'],
    [{ AGENT_LISTEN: 'localhost' }, 'AGENT_LISTEN="localhost" is invalid: expected host:port, got "localhost"'],
    [{ AGENT_LISTEN: '127.0.0.1:70000' }, 'AGENT_LISTEN="127.0.0.1:70000" is invalid: expected host:port, got "127.0.0.1:70000"'],
    [{ TORNADO_WATCH_PROCESSES: 'on' }, 'TORNADO_WATCH_PROCESSES="on" is invalid: 1 or true: count running processes by executable name (same as --watch-processes); 0 or false: off'],
    [{ TORNADO_SIMULATE: 'yes' }, 'TORNADO_SIMULATE="yes" is invalid: 1 or true: simulate a workload instead of taking PUT /counts (same as --simulate); 0 or false: off'],
    [{ TORNADO_NODE_ID: 'bad id' }, 'TORNADO_NODE_ID="bad id" is invalid: letters, digits and . _ : @ - (up to 128, starting with a letter or digit); default: the hostname'],
    [{ TORNADO_NODE_ID: '-x' }, 'TORNADO_NODE_ID="-x" is invalid: letters, digits and . _ : @ - (up to 128, starting with a letter or digit); default: the hostname'],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL="verbose" is invalid: one of fatal, error, warn, info, debug, trace, silent'],
    [{ TORNADO_SHARDS: '0' }, 'TORNADO_SHARDS="0" is invalid: an integer from 1 to 1024; the same on every agent and API'],
    [{ REDIS_CLUSTER_NODES: 'redis-a' }, 'REDIS_CLUSTER_NODES="redis-a" is invalid: Redis Cluster seed nodes, comma-separated host:port (unset: a single Redis at REDIS_URL)'],
    [{ REDIS_CLUSTER_NODES: 'redis-a:7000, redis-b:7001' }, 'REDIS_CLUSTER_NODES="redis-a:7000, redis-b:7001" is invalid: Redis Cluster seed nodes, comma-separated host:port (unset: a single Redis at REDIS_URL)'],
    [{ REDIS_CLUSTER_NODES: 'redis-a:70000' }, 'REDIS_CLUSTER_NODES="redis-a:70000" is invalid: expected host:port, got "redis-a:70000"'],
    [{ REDIS_SENTINELS: 's1' }, 'REDIS_SENTINELS="s1" is invalid: Redis Sentinels, comma-separated host:port (unset: no Sentinel); the primary is REDIS_SENTINEL_NAME'],
    [{ REDIS_SENTINELS: 's1:99999' }, 'REDIS_SENTINELS="s1:99999" is invalid: expected host:port, got "s1:99999"'],
    [{ REDIS_SENTINELS: 's1:26379', REDIS_CLUSTER_NODES: 'a:7000' }, 'REDIS_CLUSTER_NODES and REDIS_SENTINELS are both set: use one (Redis Cluster or Sentinel)'],
    [{ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'my master' }, 'REDIS_SENTINEL_NAME="my master" is invalid: the name the Sentinels monitor the primary under'],
    [{ REDIS_URL: 'http://:secret@host' }, 'REDIS_URL=(value hidden) is invalid: a redis:// or rediss:// URL, e.g. redis://:password@host:6379/0'],
    [{ REDIS_URL: 'redis://:secret@host:notaport' }, 'REDIS_URL=(value hidden) is invalid: not a parseable URL, e.g. redis://:password@host:6379/0'],
    [{ REDIS_URL: 'redis://:%ZZsecret@host:6379' }, 'REDIS_URL=(value hidden) is invalid: its user or password holds a malformed %-escape (write a % as %25)'],
    [{ REDIS_URL: 'redis://:secret@host:6379/abc' }, 'REDIS_URL=(value hidden) is invalid: its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0'],
    [{ REDIS_URL: 'redis://:secret@host:6379/1', REDIS_CLUSTER_NODES: 'a:7000' }, 'REDIS_URL=(value hidden) is invalid: it selects database 1, and Redis Cluster has only database 0'],
    [{ AGENT_TOKEN: 'fifteen-chars-x' }, `AGENT_TOKEN=(value hidden) is invalid: ${TOKEN_RULE}`],
    [{ AGENT_TOKEN: 'x'.repeat(257) }, `AGENT_TOKEN=(value hidden) is invalid: ${TOKEN_RULE}`],
    [{ AGENT_TOKEN: 'sixteen chars ok' }, `AGENT_TOKEN=(value hidden) is invalid: ${TOKEN_RULE}`],
    [{ AGENT_TOKEN: 'sixteen-chars-é!' }, `AGENT_TOKEN=(value hidden) is invalid: ${TOKEN_RULE}`],
  ]
  for (const [env, message] of cases) {
    const err = (() => {
      try {
        load(env)
      } catch (caught) {
        return caught
      }
    })()
    t.ok(err instanceof ConfigError, `${JSON.stringify(env)} throws a ConfigError`)
    t.equal((err as Error).message, message)
  }
})

t.test('the default node id is the hostname made to fit the pattern', async (t) => {
  t.equal(nodeIdFromHostname('worker-7.example.com'), 'worker-7.example.com')
  t.equal(nodeIdFromHostname('My Laptop (2)'), 'My-Laptop--2-')
  t.equal(nodeIdFromHostname('_underscore'), 'underscore')
  t.equal(nodeIdFromHostname(''), 'node')
  t.equal(nodeIdFromHostname('---'), 'node')
  t.equal(nodeIdFromHostname('a'.repeat(300)), 'a'.repeat(128))
})

t.test('--help describes every variable with its default', async (t) => {
  const lines = describeVariables(AgentEnv)
  const names = lines.map((line) => line.trim().split(/\s+/)[0])
  t.same(names, [
    'REDIS_URL',
    'TORNADO_PREFIX',
    'TORNADO_SHARDS',
    'STALE_AFTER_MS',
    'REDIS_CLUSTER_NODES',
    'REDIS_SENTINELS',
    'REDIS_SENTINEL_NAME',
    'REDIS_SENTINEL_PASSWORD',
    'TORNADO_NODE_ID',
    'HEARTBEAT_INTERVAL_MS',
    'AGENT_LISTEN',
    'AGENT_TOKEN',
    'TORNADO_SIMULATE',
    'TORNADO_WATCH_PROCESSES',
    'TORNADO_PROCESS_RULES',
    'LOG_LEVEL',
  ])
  t.match(lines[names.indexOf('HEARTBEAT_INTERVAL_MS')], /\(default: 1000\)$/)
  t.match(lines[names.indexOf('AGENT_LISTEN')], /\(default: 127\.0\.0\.1:7071\)$/)
  t.match(lines[names.indexOf('REDIS_SENTINEL_NAME')], /\(default: mymaster\)$/)
  t.equal(lines[names.indexOf('AGENT_TOKEN')], `  AGENT_TOKEN              ${TOKEN_RULE} (default: unset)`, 'unset means no token')
  t.match(lines[names.indexOf('REDIS_CLUSTER_NODES')], /\(default: unset\)$/)
  t.match(lines[names.indexOf('TORNADO_NODE_ID')], /; default: the hostname$/, 'its own default, not "(default: unset)" after it')
})

t.test("the agent's own-prefixed variables are all in FLEET_VARIABLES (the API accepts them in a shared environment)", async (t) => {
  const own = Object.keys(AgentEnv.properties).filter((name) => OWN_PREFIXES.some((prefix) => name.startsWith(prefix)))
  t.same(own.filter((name) => !FLEET_VARIABLES.has(name)), [])
})

t.test('a misspelt variable of ours stops start-up, naming it and the closest real one', async (t) => {
  t.throws(() => loadConfig({ TORNADO_SHRADS: '4' }, { hostname: 'h' }), {
    name: 'ConfigError',
    message: 'TORNADO_SHRADS is not a Tornado variable (did you mean TORNADO_SHARDS?); unset it, or see --help for the variables',
  })
  t.throws(() => loadConfig({ AGENT_TOKN: 'x'.repeat(32) }, { hostname: 'h' }), {
    message: 'AGENT_TOKN is not a Tornado variable (did you mean AGENT_TOKEN?); unset it, or see --help for the variables',
  })
  t.throws(() => loadConfig({ TORNADO_COLOUR: 'blue' }, { hostname: 'h' }), {
    message: 'TORNADO_COLOUR is not a Tornado variable; unset it, or see --help for the variables',
  })
  // The API's variable (a shared env file), Kubernetes service links and other programs' variables are fine.
  const config = loadConfig(
    { TORNADO_API_KEYS: 'sk_x', TORNADO_API_SERVICE_HOST: '10.0.0.9', TORNADO_API_PORT_3000_TCP: 'tcp://10.0.0.9:3000', NODE_ENV: 'production' },
    { hostname: 'h' },
  )
  t.equal(config.nodeId, 'h')
})
