import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { freePort } from '@tornado/shared/testing'
import { createReporter, type ReporterLogger } from '../src/client/index.js'
import { events, getJson, inspect, startRedis, startTestAgent, totals, waitFor, ZERO_TOTALS } from './fixtures/harness.js'

/** A logger that keeps what the reporter says. */
function captureReporterLog() {
  const lines: { level: 'warn' | 'info'; message: string }[] = []
  const logger: ReporterLogger = {
    warn: (message) => lines.push({ level: 'warn', message }),
    info: (message) => lines.push({ level: 'info', message }),
  }
  return { logger, lines }
}

/** A promise the test settles when it wants the tracked job to end. */
function gate<T>() {
  let open!: (value: T) => void
  let fail!: (err: Error) => void
  const promise = new Promise<T>((resolve, reject) => {
    open = resolve
    fail = reject
  })
  return { promise, open, fail }
}

const workersOf = async (url: string) =>
  ((await getJson(`${url}/workers`)).body as { workers: { id: string; age_ms: number; [stage: string]: unknown }[] }).workers.map(
    ({ age_ms: _, ...rest }) => rest,
  )

t.test('the client against a real agent', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const { agent, lines: agentLines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' })
  const log = captureReporterLog()
  const reporter = createReporter({ url: agent.url, workerId: 'muxer-1', ttlMs: 1000, logger: log.logger })
  t.teardown(() => reporter.close())

  await t.test('track counts a job while it runs and returns its result', async (t) => {
    const job = gate<string>()
    const tracked = reporter.track('muxing', () => job.promise)
    t.same(reporter.counts(), { downloading: 0, muxing: 1, uploading: 0 })
    t.same((await waitFor(check.totals, totals(0, 1, 0), 500)).value, totals(0, 1, 0), 'in Redis while it runs')
    t.same(await workersOf(agent.url), [{ id: 'muxer-1', downloading: 0, muxing: 1, uploading: 0, ttl_ms: 1000 }])
    job.open('out.mp4')
    t.equal(await tracked, 'out.mp4', 'the job\'s result')
    t.same(reporter.counts(), { downloading: 0, muxing: 0, uploading: 0 })
    t.same((await waitFor(check.totals, ZERO_TOTALS, 500)).value, ZERO_TOTALS, 'and out of it once done')
  })

  await t.test('track rethrows what the job throws, and the count goes back all the same', async (t) => {
    const boom = new Error('ffmpeg exited with 1')
    const job = gate<never>()
    const tracked = reporter.track('uploading', () => job.promise)
    const sync = reporter.track('downloading', () => {
      throw new TypeError('not even async')
    })
    sync.catch(() => {}) // asserted below; it rejects before the test gets there
    t.same((await waitFor(check.totals, totals(0, 0, 1), 500)).value, totals(0, 0, 1))
    job.fail(boom)
    await t.rejects(tracked, boom)
    t.equal(await tracked.catch((err: unknown) => err), boom, 'the very same error')
    await t.rejects(sync, new TypeError('not even async'))
    t.same(reporter.counts(), { downloading: 0, muxing: 0, uploading: 0 })
    t.same((await waitFor(check.totals, ZERO_TOTALS, 500)).value, ZERO_TOTALS)
  })

  await t.test('concurrent jobs add up; the lease stays alive while they run', async (t) => {
    const jobs = [gate<void>(), gate<void>(), gate<void>()]
    const tracked = [
      reporter.track('muxing', () => jobs[0]!.promise),
      reporter.track('muxing', () => jobs[1]!.promise),
      reporter.track('downloading', () => jobs[2]!.promise),
    ]
    t.same((await waitFor(check.totals, totals(1, 2, 0), 500)).value, totals(1, 2, 0))
    await sleep(1600) // longer than the 1000 ms lease plus a 200 ms tick: only renewals keep it
    t.same(await check.totals(), totals(1, 2, 0), 'still counted')
    t.same(events(agentLines, 'worker_expired'), [], 'the lease never ran out')
    for (const job of jobs) job.open()
    await Promise.all(tracked)
    t.same((await waitFor(check.totals, ZERO_TOTALS, 500)).value, ZERO_TOTALS)
  })

  await t.test('close removes the worker at once', async (t) => {
    await reporter.close()
    t.same(await workersOf(agent.url), [])
    t.equal(await reporter.track('muxing', async () => 'still runs'), 'still runs', 'a job after close runs, unreported')
    await sleep(100)
    t.same(await workersOf(agent.url), [])
    t.same(log.lines, [], 'nothing to say while the agent was there')
  })
})

t.test('the agent is down: jobs run, one line is logged, and reporting recovers when it is back', async (t) => {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const log = captureReporterLog()
  const reporter = createReporter({ url, workerId: 'dl-7', ttlMs: 3000, retryMs: 100, logger: log.logger })
  t.teardown(() => reporter.close())

  t.equal(await reporter.track('downloading', async () => 42), 42, 'a job runs and returns while nothing listens')
  const job = gate<void>()
  const tracked = reporter.track('downloading', () => job.promise)
  await sleep(600) // several retries
  t.same(log.lines, [
    {
      level: 'warn',
      message: `tornado reporter ${url}/workers/dl-7: cannot report to the agent (ECONNREFUSED); jobs run on, retrying every 100 ms`,
    },
  ], 'one line for the whole outage')

  const server = await startRedis(t)
  const check = inspect(t, server)
  await startTestAgent(t, server.url, { AGENT_LISTEN: `127.0.0.1:${port}`, HEARTBEAT_INTERVAL_MS: '200' })
  const seen = await waitFor(check.totals, totals(1, 0, 0), 1000)
  t.same(seen.value, totals(1, 0, 0), `the running job reached the agent ${seen.ms} ms after the agent started`)
  t.same(log.lines[1], { level: 'info', message: `tornado reporter ${url}/workers/dl-7: the agent takes reports again` })
  t.equal(log.lines.length, 2)
  job.open()
  await tracked
  t.same((await waitFor(check.totals, ZERO_TOTALS, 500)).value, ZERO_TOTALS)
})

t.test('an agent that refuses reports counts as down too, and close never throws', async (t) => {
  const server = await startRedis(t)
  const { agent } = await startTestAgent(t, server.url, { TORNADO_SIMULATE: '1' }, { random: () => 0.5 })
  const log = captureReporterLog()
  const reporter = createReporter({ url: agent.url, workerId: 'w', retryMs: 100, logger: log.logger })
  t.equal(await reporter.track('muxing', async () => 'done'), 'done')
  await sleep(300)
  t.same(log.lines, [
    {
      level: 'warn',
      message: `tornado reporter ${agent.url}/workers/w: cannot report to the agent (HTTP 409 {"error":"this agent is simulating its workload (--simulate or TORNADO_SIMULATE=1), so it does not take worker reports"}); jobs run on, retrying every 100 ms`,
    },
  ])
  await agent.stop()
  await reporter.close()
  t.equal(log.lines.length, 1, 'close says nothing more during the same outage')
})

t.test('createReporter refuses bad options at once', async (t) => {
  t.throws(() => createReporter({ workerId: 'has space' }), new TypeError('workerId "has space" is invalid: use 1 to 64 letters, digits, or . _ : -'))
  t.throws(() => createReporter({ workerId: 'w'.repeat(65) }), TypeError)
  t.throws(() => createReporter({ workerId: 'w', ttlMs: 999 }), new TypeError('ttlMs 999 is invalid: use an integer from 1000 to 300000'))
  t.throws(() => createReporter({ workerId: 'w', url: 'not a url' }), TypeError)
  const reporter = createReporter({ workerId: 'w', url: 'http://127.0.0.1:9', logger: { warn: () => {} } })
  // @ts-expect-error a stage that does not exist
  await t.rejects(reporter.track('encoding', async () => 1), new TypeError('stage "encoding" is invalid: use downloading, muxing, uploading'))
  await reporter.close()
})

t.test('the client entry point imports only Node built-ins (no Fastify, ioredis or pino in worker code)', async (t) => {
  const dir = new URL('../src/client/', import.meta.url)
  for (const file of readdirSync(dir)) {
    const source = readFileSync(new URL(file, dir), 'utf8')
    const specifiers = [...source.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)].map((match) => match[1]!)
    const outside = specifiers.filter((specifier) => !specifier.startsWith('node:') && !/^\.\/[\w-]+\.js$/.test(specifier))
    t.same(outside, [], `${file} imports ${JSON.stringify(specifiers)}`)
  }
})
