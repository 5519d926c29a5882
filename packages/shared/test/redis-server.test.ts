import { existsSync, readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { RedisServer } from '../src/testing/index.js'

// A replica's full sync writes dump.rdb into the server's folder even with --save "": it once landed in the folder
// the tests ran from, where the next private server would have loaded it instead of starting empty.
t.test('a private redis-server keeps its files in a folder of its own, removed on stop', async (t) => {
  const before = existsSync('dump.rdb')
  const primary = await RedisServer.start(['--repl-diskless-sync-delay', '0'])
  const replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port)])
  const raw = replica.client()
  t.teardown(async () => {
    raw.disconnect()
    await replica.stop()
    await primary.stop()
  })
  let linked = false
  for (let i = 0; i < 200 && !linked; i++) {
    linked = /master_link_status:up/.test(await raw.info('replication'))
    if (!linked) await sleep(25)
  }
  t.ok(linked, 'the replica synced')
  t.same(await raw.config('GET', 'dir'), ['dir', replica.dir])
  t.not(replica.dir, primary.dir)
  t.equal(existsSync('dump.rdb'), before, 'nothing written where the tests run')
  t.same(readdirSync(replica.dir), ['dump.rdb'], "the sync's file is in the replica's folder")

  await replica.stop()
  t.equal(existsSync(replica.dir), false, 'the folder is gone after stop')
})

t.test('kill() ends the server with SIGKILL; restart() brings it back empty on the same port', async (t) => {
  const server = await RedisServer.start()
  t.teardown(() => server.stop())
  const raw = server.client()
  t.teardown(() => raw.disconnect())
  await raw.set('k', 'v')
  await server.kill()
  t.equal(server.pid, undefined)
  await server.restart()
  t.equal(await raw.get('k'), null, 'empty after the restart')
  t.equal(await raw.dbsize(), 0)
})
