import t from 'tap'
import { Cluster } from 'ioredis'
import { createRedisConnection } from '../src/index.js'

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
