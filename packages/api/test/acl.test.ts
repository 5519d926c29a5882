import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { shardKeys } from '@tornado/shared'
import { RedisServer } from '@tornado/shared/testing'
import { BEAT_SCRIPT, LIST_SCRIPT, RECOUNT_SCRIPT, REMOVE_SCRIPT, TOTALS_SCRIPT } from '../../shared/src/heartbeat-scripts.js'
import { aclRules, aclUser, type AclRole } from '../src/acl.js'
import { ACL_USAGE, runAclCommand } from '../src/acl-cli.js'
import { apiKeyRedisKeys } from '../src/api-keys.js'

// Exactly what `tornado-api acl` prints for the default TORNADO_PREFIX, one line per user.
const widths = (kind: string) => ['[0-9]', '[0-9][0-9]', '[0-9][0-9][0-9]', '[0-9][0-9][0-9][0-9]'].map((n) => `~{tornado:${n}}:${kind}`).join(' ')
const NODES = widths('nodes')
const RECORDS = widths('node:*')
const TOTALS = widths('totals')
const EXPECTED_STDOUT = [
  `ACL SETUSER tornado-agent reset on ><agent-password> +hello +info +evalsha +eval +time ${NODES} ${RECORDS} ${TOTALS}` +
    ` (+zadd +zscore +zrem +zrange +zrangebyscore +zcard +type +del ${NODES}) (+get +set +del ${RECORDS})` +
    ` (+hmget +hincrby +hset +del +exists ${TOTALS})`,
  `ACL SETUSER tornado-api reset on ><api-password> +hello +info +ping +evalsha +eval +time ${NODES} ${RECORDS} ${TOTALS}` +
    ` (+zrem +zrange +zrangebyscore +zcard +zcount +type +del ${NODES}) (+get +del ${RECORDS}) (+hmget +hincrby +hset +del +exists ${TOTALS})` +
    ' (+hkeys %R~{tornado:keys}:by-digest)',
  'ACL SETUSER tornado-admin reset on ><admin-password> +hello +info +client|setname +multi +exec +hset +hget +hgetall +hvals' +
    ' +hdel +del ~{tornado:keys}:by-digest ~{tornado:keys}:key:*',
  '',
].join('\n')
const EXPECTED_STDERR = 'Replace <agent-password>, <api-password> and <admin-password> with long random passwords before running these.\n'

function acl(argv: string[], env: Record<string, string> = {}) {
  let out = ''
  let err = ''
  const code = runAclCommand(argv, env, { out: (text) => (out += text), err: (text) => (err += text) })
  return { code, out, err }
}

t.test('tornado-api acl prints the three users for TORNADO_PREFIX, exactly', async (t) => {
  t.same(acl([]), { code: 0, out: EXPECTED_STDOUT, err: EXPECTED_STDERR })
  const fleet = acl([], { TORNADO_PREFIX: 'fleet.b' })
  t.equal(fleet.out, EXPECTED_STDOUT.replaceAll('tornado', 'fleet.b'))
})

t.test('a database other than 0, --client-setinfo and Redis Cluster add what ioredis then sends', async (t) => {
  const withConnect = (tokens: string) =>
    EXPECTED_STDOUT.replace('+hello +info +evalsha', `+hello +info ${tokens} +evalsha`).replace('+hello +info +ping', `+hello +info ${tokens} +ping`)
  t.equal(acl([], { REDIS_URL: 'redis://h:6379/3' }).out, withConnect('+select').replace('+info +client|setname', '+info +select +client|setname'))
  t.equal(acl([], { REDIS_URL: 'redis://h:6379?db=2' }).out, withConnect('+select').replace('+info +client|setname', '+info +select +client|setname'))
  t.equal(acl([], { REDIS_URL: 'redis://h:6379/0' }).out, EXPECTED_STDOUT)
  t.equal(
    acl(['--client-setinfo'], { REDIS_CLUSTER_NODES: 'a:7000,b:7001' }).out,
    withConnect('+client|setinfo +cluster|slots +cluster|info +client|setname').replace(
      '+info +client|setname',
      '+info +client|setinfo +cluster|slots +cluster|info +client|setname',
    ),
    'the keys CLI uses the Cluster client too: admin gets the Cluster commands',
  )
})

t.test('bad arguments and variables: exit 2 with the usage, exit 1 naming the variable', async (t) => {
  t.same(acl(['--all']), { code: 2, out: '', err: `tornado-api acl: Unknown option '--all'\n\n${ACL_USAGE}` })
  t.same(acl(['extra']), { code: 2, out: '', err: `tornado-api acl: Unexpected argument 'extra'. This command does not take positional arguments\n\n${ACL_USAGE}` })
  const badPrefix = acl([], { TORNADO_PREFIX: 'a b' })
  t.equal(badPrefix.code, 1)
  t.match(badPrefix.err, /^tornado-api acl: TORNADO_PREFIX/)
  t.same(acl([], { REDIS_URL: 'redis://:secret@h:6379/x' }), { code: 1, out: '', err: 'tornado-api acl: REDIS_URL=(value hidden) is invalid: its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0\n' })
})

t.test('the bin runs it: stdout and stderr as in-process', async (t) => {
  const run = async (args: string[]) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(new URL('../src/bin.ts', import.meta.url)), 'acl', ...args], {
      // tap's loader needs its own variables; ours are left out so the defaults apply.
      env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(REDIS_.*|TORNADO_.*)$/.test(name))),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    const [code] = (await once(child, 'exit')) as [number]
    return { code, out, err }
  }
  t.same(await run([]), { code: 0, out: EXPECTED_STDOUT, err: EXPECTED_STDERR })
})

/**
 * Every command a script calls, lower case, as Redis names them in ACL rules; rebuildMembers's SCAN and ZADD run
 * only where redis.acl_check_cmd allows them, so no role needs them.
 */
const calledBy = (...scripts: string[]) =>
  new Set(
    scripts.flatMap((script) =>
      [...script.replace(/\nlocal function rebuildMembers[\s\S]*?\nend\n/, '\n').matchAll(/redis\.p?call\('([A-Z]+)'/g)].map((match) => match[1]!.toLowerCase()),
    ),
  )
const granted = (role: AclRole) => {
  const user = aclUser(role, 'tornado')
  return new Set([...user.root.commands, ...user.selectors.flatMap((selector) => selector.commands)])
}
const sorted = (set: Set<string>) => [...set].sort()

t.test('each role holds exactly the commands its scripts call, besides connecting', async (t) => {
  const connect = ['hello', 'info', 'evalsha', 'eval']
  const agent = granted('agent')
  t.same(sorted(agent), sorted(new Set([...connect, ...calledBy(BEAT_SCRIPT, REMOVE_SCRIPT)])))
  const api = granted('api')
  t.same(sorted(api), sorted(new Set([...connect, 'ping', 'hkeys', ...calledBy(TOTALS_SCRIPT, LIST_SCRIPT)])))
  t.same(sorted(calledBy(RECOUNT_SCRIPT)).filter((command) => !api.has(command)), [], 'the API user can run the operators recount too')
  t.same([...calledBy(TOTALS_SCRIPT, LIST_SCRIPT, RECOUNT_SCRIPT)].filter((command) => ['set', 'zadd'].includes(command)), [], 'no read script adds a node or writes a record')
})

t.test('the key patterns, as Redis matches them (ACL DRYRUN)', async (t) => {
  const server = await RedisServer.start()
  t.teardown(() => server.stop())
  const raw = server.client()
  t.teardown(() => raw.disconnect())
  for (const role of ['agent', 'api', 'admin'] as const) {
    const user = aclUser(role, 'tornado')
    await raw.call('ACL', 'SETUSER', user.name, ...aclRules(user, 'pw'))
  }
  const dryrun = async (user: string, ...command: string[]) => {
    try {
      return String(await raw.call('ACL', 'DRYRUN', user, ...command))
    } catch (err) {
      return (err as Error).message
    }
  }
  const refusedKey = (key: string) => `This user has no permissions to access the '${key}' key`
  const layout = { prefix: 'tornado' }
  for (const shard of [0, 9, 10, 99, 100, 1023]) {
    const keys = shardKeys(layout, shard)
    t.same(
      [
        await dryrun('tornado-agent', 'zadd', keys.nodes, '1', 'n'),
        await dryrun('tornado-agent', 'set', `${keys.nodePrefix}n`, 'v'),
        await dryrun('tornado-agent', 'hincrby', keys.totals, 'muxing', '1'),
        await dryrun('tornado-api', 'zrem', keys.nodes, 'n'),
        await dryrun('tornado-api', 'del', `${keys.nodePrefix}n`),
        await dryrun('tornado-api', 'hset', keys.totals, 'muxing', '1'),
        await dryrun('tornado-agent', 'evalsha', 'a'.repeat(40), '3', keys.nodes, `${keys.nodePrefix}n`, keys.totals),
      ],
      ['OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK'],
      `shard ${shard}`,
    )
  }
  const apiKeys = apiKeyRedisKeys('tornado')
  const outside = [
    apiKeys.byDigest,
    apiKeys.record('0123456789abcdef'),
    '{tornado:10000}:nodes', // beyond TORNADO_SHARDS' range
    '{tornado:5:0}:nodes', // a fleet whose prefix is tornado:5
    '{tornado:x}:nodes',
    '{tornadoX:0}:nodes',
    'tornado:0:nodes',
    '{tornado:0}:other',
  ]
  for (const key of outside) {
    t.same(
      [await dryrun('tornado-agent', 'zadd', key, '1', 'n'), await dryrun('tornado-api', 'zrem', key, 'n'), await dryrun('tornado-agent', 'get', key)],
      [refusedKey(key), refusedKey(key), refusedKey(key)],
      key,
    )
  }
  t.same(
    [
      await dryrun('tornado-api', 'hkeys', apiKeys.byDigest),
      await dryrun('tornado-api', 'hset', apiKeys.byDigest, 'd', 'i'),
      await dryrun('tornado-admin', 'hset', apiKeys.byDigest, 'd', 'i'),
      await dryrun('tornado-admin', 'del', apiKeys.record('0123456789abcdef')),
      await dryrun('tornado-admin', 'get', shardKeys(layout, 0).nodePrefix + 'n'),
    ],
    ['OK', refusedKey(apiKeys.byDigest), 'OK', 'OK', "This user has no permissions to run the 'get' command"],
  )
})
