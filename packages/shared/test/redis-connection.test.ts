import t from 'tap'
import { Cluster } from 'ioredis'
import { checkRedisUrl, ConfigError, createRedisClient, createRedisConnection, waitForReady } from '../src/index.js'
import { RedisServer } from '../src/testing/index.js'

// Cluster clients are built from REDIS_URL's credentials: the same URL forms a single Redis accepts.
t.test('Cluster credentials come from the URL, from its user info or its query', async (t) => {
  const seeds = [{ host: '127.0.0.1', port: 1 }]
  const credentialsOf = (url: string) => {
    const client = createRedisConnection({ url, clusterNodes: seeds }, { lazyConnect: true })
    t.teardown(() => client.disconnect())
    t.ok(client instanceof Cluster)
    const { username, password, tls } = (client as Cluster).options.redisOptions ?? {}
    return { username, password, tls }
  }
  t.same(credentialsOf('redis://ops:p%40ss@ignored:6379'), { username: 'ops', password: 'p@ss', tls: undefined })
  t.same(credentialsOf('redis://ignored:6379/0?password=q-pw&username=q-user'), { username: 'q-user', password: 'q-pw', tls: undefined })
  t.same(credentialsOf('rediss://:only-pw@ignored'), { username: undefined, password: 'only-pw', tls: {} })
  t.same(credentialsOf('redis://ignored'), { username: undefined, password: undefined, tls: undefined })
})

t.test('checkRedisUrl: what ioredis would misread stops start-up, naming REDIS_URL and hiding the value', async (t) => {
  const why = (url: string, clustered = false) => {
    try {
      checkRedisUrl(url, clustered ? { clusterNodes: [{ host: 'a', port: 7000 }] } : {})
      return 'ok'
    } catch (err) {
      t.ok(err instanceof ConfigError)
      t.notMatch((err as Error).message, 'pw', 'the password is not in the message')
      return (err as Error).message.replace('REDIS_URL=(value hidden) is invalid: ', '')
    }
  }
  t.equal(why('redis://:pw@h:6379/15'), 'ok')
  t.equal(why('redis://:pw@h:6379/'), 'ok')
  t.equal(why('rediss://u:p%40w@h?db=3'), 'ok')
  t.equal(why('redis://:pw@h:6379', true), 'ok')
  t.equal(why('redis://:pw@h:notaport'), 'not a parseable URL, e.g. redis://:password@host:6379/0')
  t.equal(why('redis://:%ZZpw@h:6379'), 'its user or password holds a malformed %-escape (write a % as %25)')
  for (const url of ['redis://:pw@h:6379/abc', 'redis://:pw@h:6379/1/2', 'redis://:pw@h:6379/-1', 'redis://:pw@h/?db=x', 'redis://:pw@h:6379/1e3']) {
    t.equal(why(url), 'its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0', url)
  }
  t.equal(why('redis://:pw@h:6379/2', true), 'it selects database 2, and Redis Cluster has only database 0')
  // ioredis takes the last ?db= (and the path before any): checked as it reads them.
  t.equal(why('redis://:pw@h:6379/?db=0&db=x'), 'its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0')
  t.equal(why('redis://:pw@h:6379/?db=0&db=3', true), 'it selects database 3, and Redis Cluster has only database 0')
  t.equal(why('redis://:pw@h:6379/0?db=3', true), 'ok', 'the path wins')
  t.equal(why('redis://u:6379#pw@h:6379'), "it holds a '#', where the URL ends for ioredis: write a # in a password as %23")
  t.equal(why('redis://h/0?password=pw#more'), "it holds a '#', where the URL ends for ioredis: write a # in a password as %23")
  t.equal(why('redis://:p%23w@h:6379'), 'ok')
})

t.test('a database the server does not have: never ready, nothing written to database 0', async (t) => {
  const server = await RedisServer.start()
  t.teardown(() => server.stop())
  const client = createRedisClient(`${server.url}/99`)
  const errors = new Set<string>()
  client.on('error', (err: Error) => errors.add(err.message))
  t.teardown(() => client.disconnect())
  // ioredis used to report the failed SELECT and go ready on database 0.
  t.equal(await waitForReady(client, 1_500), false, 'not ready')
  t.ok(errors.has('ERR DB index is out of range'), 'the reason is reported')
  await t.rejects(client.set('k', 'v'))
  const raw = server.client()
  t.teardown(() => raw.disconnect())
  t.equal(await raw.dbsize(), 0, 'database 0 untouched')
})
