import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { builtBin, childEnv, freePort } from '@tornado/shared/testing'
import { AgentEnv } from '../src/index.js'
import { HeartbeatStore, heartbeatKey } from '@tornado/shared'
import { inspect, layout, onEarlyExit, putCounts, totals, waitFor, ZERO_TOTALS, startRedis } from './fixtures/harness.js'

const packageRoot = fileURLToPath(new URL('..', import.meta.url))

interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; afterMs: number }>
}

const agentVariables = new Set(Object.keys(AgentEnv.properties))

/** Runs the built bin (dist/bin.js) with none of the test's agent variables, only those given. */
function runBin(t: { teardown(fn: () => unknown): void }, args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [builtBin(packageRoot), ...args], {
    cwd: packageRoot,
    env: { ...childEnv(process.env, (name) => agentVariables.has(name)), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()))
  let signalledAt = 0
  const kill = child.kill.bind(child)
  child.kill = (signal?: NodeJS.Signals | number) => {
    signalledAt = Date.now()
    return kill(signal)
  }
  const exit = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    afterMs: signalledAt ? Date.now() - signalledAt : -1,
  }))
  const killIfRunning = () => {
    if (child.exitCode === null && child.signalCode === null) kill('SIGKILL')
  }
  t.teardown(killIfRunning)
  void exit.then(onEarlyExit(killIfRunning))
  return { child, stdout: () => out, stderr: () => err, exit }
}

t.test('--help, --version, a bad option, a bad or misspelt variable and a bad rules file', async (t) => {
  // Started together: six processes at once take little longer than one.
  const rulesFile = join(t.testdir({ 'rules.json': '{"muxing":["ffmpeg"],"encoding":["x264"]}' }), 'rules.json')
  const help = runBin(t, ['--help'])
  const version = runBin(t, ['--version'])
  const badVariable = runBin(t, [], { HEARTBEAT_INTERVAL_MS: '50' })
  const badOption = runBin(t, ['--simulat'])
  const misspelt = runBin(t, [], { TORNADO_SHRADS: '4' })
  const badRules = runBin(t, ['--watch-processes'], { TORNADO_PROCESS_RULES: rulesFile })

  t.equal((await help.exit).code, 0)
  for (const name of ['--simulate', '--watch-processes', '--help', '--version', ...Object.keys(AgentEnv.properties)]) t.match(help.stdout(), name)
  t.match(help.stdout(), 'HEARTBEAT_INTERVAL_MS    milliseconds between heartbeats, an integer from 100 to 60000 (default: 1000)')
  t.match(help.stdout(), 'AGENT_TOKEN              a secret of 16 to 256 printable ASCII characters, no spaces (e.g. openssl rand -hex 32); when set, every local route but GET /health needs "Authorization: Bearer <token>" (default: unset)\n')
  t.match(help.stdout(), 'GET /metrics (Prometheus). With AGENT_TOKEN set, every route but GET /health needs')
  t.match(help.stdout(), 'AGENT_LISTEN             host:port of the local HTTP interface (PUT /counts), e.g. 127.0.0.1:7071 (default: 127.0.0.1:7071)')

  t.equal((await version.exit).code, 0)
  t.equal(version.stdout(), '0.1.0\n')

  t.equal((await badVariable.exit).code, 1)
  t.equal(
    badVariable.stderr(),
    'tornado-agent: HEARTBEAT_INTERVAL_MS="50" is invalid: milliseconds between heartbeats, an integer from 100 to 60000\nRun tornado-agent --help for every variable and its default.\n',
    'the message names the variable, no stack trace',
  )
  t.equal(badVariable.stdout(), '')

  t.equal((await misspelt.exit).code, 1)
  t.equal(
    misspelt.stderr(),
    'tornado-agent: TORNADO_SHRADS is not a Tornado variable (did you mean TORNADO_SHARDS?); unset it, or see --help for the variables\nRun tornado-agent --help for every variable and its default.\n',
  )
  t.equal(misspelt.stdout(), '', 'nothing started')

  t.equal((await badOption.exit).code, 1)
  t.match(badOption.stderr(), /^tornado-agent: Unknown option '--simulat'.*; see --help\n$/)

  t.equal((await badRules.exit).code, 1)
  t.equal(
    badRules.stderr(),
    `tornado-agent: TORNADO_PROCESS_RULES=${JSON.stringify(rulesFile)} is invalid: "encoding" is not a stage; the stages are downloading, muxing, uploading\nRun tornado-agent --help for every variable and its default.\n`,
  )
  t.equal(badRules.stdout(), '')
})

t.test('a real agent process', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  t.beforeEach(async () => {
    await check.redis.flushall() // the private server this test started
  })

  const start = async (t: { teardown(fn: () => unknown): void }, extraEnv: Record<string, string> = {}, args: string[] = []) => {
    const port = await freePort()
    const run = runBin(t, args, {
      REDIS_URL: server.url,
      AGENT_LISTEN: `127.0.0.1:${port}`,
      TORNADO_NODE_ID: 'proc-node',
      HEARTBEAT_INTERVAL_MS: '200',
      ...extraEnv,
    })
    const url = `http://127.0.0.1:${port}`
    const live = await waitFor(async () => (await check.store.readTotals()).liveNodes, 1, 15_000)
    if (live.value !== 1) throw new Error(`the agent did not beat: ${run.stdout()} ${run.stderr()}`)
    const listening = await waitFor(async () => (await fetch(`${url}/health`)).status, 200, 5000)
    if (listening.value !== 200) throw new Error(`the agent did not listen: ${run.stdout()} ${run.stderr()}`)
    return { ...run, url }
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    t.test(`${signal}: exit 0 within 3 s, and the node has left the totals`, async (t) => {
      const agent = await start(t)
      t.same(await putCounts(agent.url, '{"downloading":1,"muxing":2,"uploading":3}'), { status: 204, body: undefined })
      t.same((await waitFor(check.totals, totals(1, 2, 3), 300)).value, totals(1, 2, 3))
      agent.child.kill(signal)
      const exit = await agent.exit
      t.equal(exit.code, 0)
      t.ok(exit.afterMs < 3000, `exited ${exit.afterMs} ms after ${signal}`)
      const { redisTimeMs, ...snapshot } = await check.store.readTotals()
      t.same(snapshot, { totals: ZERO_TOTALS, liveNodes: 0, freshNodes: 0, pruned: 0, dropped: 0 })
      t.ok(redisTimeMs > 0)
      t.equal(await check.redis.exists(heartbeatKey(layout, 'proc-node')), 0, 'record deleted')
      const lines = agent.stdout().trim().split('\n').map((line) => JSON.parse(line) as { event?: string })
      t.same(
        lines.map((line) => line.event).filter((event) => ['signal', 'stopping', 'removed', 'stopped'].includes(event ?? '')),
        ['signal', 'stopping', 'removed', 'stopped'],
      )
      t.equal(agent.stderr(), '')
    })
  }

  t.test('--simulate: beats, refuses reports with 409, stops on SIGTERM', async (t) => {
    const agent = await start(t, {}, ['--simulate'])
    const refused = await putCounts(agent.url, '{"downloading":1,"muxing":0,"uploading":0}')
    t.equal(refused.status, 409)
    t.equal((await check.record('proc-node')).instance?.length, 36, 'a random UUID per process')
    agent.child.kill('SIGTERM')
    t.equal((await agent.exit).code, 0)
    t.equal(await check.redis.exists(heartbeatKey(layout, 'proc-node')), 0)
  })

  t.test('a second signal forces exit while shutdown waits for a hanging Redis', async (t) => {
    const agent = await start(t)
    server.pause()
    t.teardown(() => server.resume())
    await sleep(100)
    agent.child.kill('SIGTERM')
    await sleep(200)
    agent.child.kill('SIGTERM')
    const exit = await agent.exit
    t.equal(exit.code, 1, 'forced: the orderly path would have exited 0')
    // Exit code 1 already proves the forced path; the bound only rules out a hang. It is loose because a child
    // under tap writes its V8 coverage on exit, which takes seconds on a loaded 2-core machine.
    t.ok(exit.afterMs < 5000, `exited ${exit.afterMs} ms after the second signal`)
    t.match(agent.stdout(), '"event":"forced_exit"')
    server.resume()
  })

  t.test('SIGKILL: the node leaves the totals once it is stale (the readers prune it)', async (t) => {
    const agent = await start(t, { STALE_AFTER_MS: '1000' })
    await putCounts(agent.url, '{"downloading":9,"muxing":0,"uploading":0}')
    t.same((await waitFor(check.totals, totals(9, 0, 0), 300)).value, totals(9, 0, 0))
    agent.child.kill('SIGKILL')
    await agent.exit
    const stale = new HeartbeatStore(check.redis, { prefix: 'tornado', shards: 1 }, 1000)
    t.same((await waitFor(async () => (await stale.readTotals()).totals, ZERO_TOTALS, 1500)).value, ZERO_TOTALS)
  })
})
