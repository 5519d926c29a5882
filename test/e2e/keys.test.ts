import t from 'tap'
import { RedisServer } from '@tornado/shared/testing'
import { listeningUrl, startProcess, until } from './processes.js'

// Keys made and revoked with the CLI, seen by every running API process without a restart.
const BOOTSTRAP_KEY = 'sk_e2e_bootstrap_4f2a91c7d8'

t.test('tornado-api keys against two running API processes', async (t) => {
  const redis = await RedisServer.start()
  t.teardown(() => redis.stop())
  const common = { REDIS_URL: redis.url, LOG_LEVEL: 'info' }
  const apis = [0, 1].map(() => startProcess(t, 'api', { ...common, TORNADO_API_KEYS: BOOTSTRAP_KEY, PORT: '0', HOST: '127.0.0.1' }))
  const urls = await Promise.all(apis.map(listeningUrl))
  const keysCli = async (...args: string[]) => {
    const cli = startProcess(t, 'api', common, ['keys', ...args])
    return { code: await cli.exited, output: cli.output() }
  }
  const statuses = (key: string) =>
    Promise.all(urls.map(async (url) => (await fetch(`${url}/dashboard/cluster`, { headers: { 'x-api-key': key } })).status))

  const created = await keysCli('create', '--name', 'wall display')
  t.equal(created.code, 0)
  const key = /^(sk_[A-Za-z0-9_-]+)$/m.exec(created.output)?.[1]
  const id = /Created key ([0-9a-f]{16}) /.exec(created.output)?.[1]
  t.ok(key && id, 'the CLI printed a key and its id')
  t.same(await statuses(key!), [200, 200], 'both processes accept the new key')
  t.same(await statuses(BOOTSTRAP_KEY), [200, 200], 'the bootstrap key from TORNADO_API_KEYS still works')

  const revoked = await keysCli('revoke', id!)
  t.same(revoked, { code: 0, output: `Revoked key ${id}\n` })
  const revokedAt = Date.now()
  await until('both processes refuse the revoked key', async () => ((await statuses(key!)).every((s) => s === 401) ? true : undefined), 2000)
  const refusedAfterMs = Date.now() - revokedAt
  t.ok(refusedAfterMs < 1000, `refused by both ${refusedAfterMs} ms after the revoke`)
  t.same(await statuses(BOOTSTRAP_KEY), [200, 200], 'the other key untouched')

  for (const api of apis) api.child.kill('SIGTERM')
  t.same(await Promise.all(apis.map((api) => api.exited)), [0, 0], 'both stop cleanly')
  for (const api of apis) t.notMatch(api.output(), key!.slice(3), 'the key is never logged')
})
