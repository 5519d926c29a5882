import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createReporter, type ReporterLogger } from '../src/client/index.js'
import { isLoopback, MISSING_TOKEN, NOT_BEARER, REPEATED_HEADER, WRONG_TOKEN } from '../src/index.js'
import { WARN, events, inspect, startRedis, startTestAgent, totals, waitFor, ZERO_TOTALS } from './fixtures/harness.js'

const TOKEN = 'tok-3f9a1c77e2b04d5a-do-not-log'
const WRONG = 'tok-3f9a1c77e2b04d5a-do-not-loG'
const COUNTS = '{"downloading":1,"muxing":2,"uploading":3}'
const WORKER = '{"downloading":0,"muxing":1,"uploading":0,"ttl_ms":10000}'

interface Answer {
  status: number
  body: unknown
  wwwAuthenticate: string | null
}

async function call(url: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body,
  })
  const text = await response.text()
  const json = (response.headers.get('content-type') ?? '').startsWith('application/json') && text !== ''
  return { status: response.status, body: json ? (JSON.parse(text) as unknown) : text, wwwAuthenticate: response.headers.get('www-authenticate') }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const refused = (error: string): Answer => ({ status: 401, body: { error }, wwwAuthenticate: 'Bearer realm="tornado-agent"' })

/** Every route but /health, with a body where it takes one; the 404 too, so routes cannot be probed. */
const GUARDED: [string, string, string?][] = [
  ['GET', '/counts'],
  ['PUT', '/counts', COUNTS],
  ['GET', '/workers'],
  ['PUT', '/workers/w1/counts', WORKER],
  ['DELETE', '/workers/w1'],
  ['GET', '/processes'],
  ['GET', '/metrics'],
  ['GET', '/no-such-route'],
  ['PUT', '/counts', '{"not":"valid"}'],
]

t.test('with AGENT_TOKEN, every route but /health needs "Authorization: Bearer <token>"', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const { agent, raw, lines } = await startTestAgent(t, server.url, { AGENT_TOKEN: TOKEN, HEARTBEAT_INTERVAL_MS: '200' })
  const { url } = agent

  await t.test('refused without it, with a wrong one, or in another form; nothing changes', async (t) => {
    const attempts: [string, Record<string, string>, string][] = [
      ['no header', {}, MISSING_TOKEN],
      ['an empty header', { authorization: '' }, MISSING_TOKEN],
      ['a wrong token', bearer(WRONG), WRONG_TOKEN],
      ['a prefix of the token', bearer(TOKEN.slice(0, -1)), WRONG_TOKEN],
      ['the token plus one character', bearer(`${TOKEN}x`), WRONG_TOKEN],
      ['Basic instead of Bearer', { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` }, NOT_BEARER],
      ['the bare token', { authorization: TOKEN }, NOT_BEARER],
      ['"Bearer" with no token', { authorization: 'Bearer' }, NOT_BEARER],
      ['an x-agent-token header (not accepted)', { 'x-agent-token': TOKEN }, MISSING_TOKEN],
    ]
    for (const [what, headers, error] of attempts) {
      for (const [method, path, body] of GUARDED) {
        t.same(await call(url, method, path, headers, body), refused(error), `${what}: ${method} ${path}`)
      }
    }
    t.equal(MISSING_TOKEN, 'this agent needs its token (AGENT_TOKEN): send the header "Authorization: Bearer <token>"')
    t.equal(NOT_BEARER, 'the Authorization header must be "Bearer <token>" with the agent\'s AGENT_TOKEN')
    t.equal(WRONG_TOKEN, 'wrong token: the Bearer token is not this agent\'s AGENT_TOKEN')
    t.same(await call(url, 'GET', '/workers', bearer(TOKEN)), { status: 200, body: { workers: [] }, wwwAuthenticate: null }, 'no refused report was taken')
    await sleep(250) // a beat
    t.same(await check.totals(), ZERO_TOTALS)
  })

  await t.test('two Authorization headers are refused, whichever comes first', async (t) => {
    // fetch would merge them into one "a, b" value; node:http sends a raw header list line by line (Host included: a raw list gets no defaults).
    const twice = (path: string, values: string[]) =>
      new Promise<{ status: number; body: unknown }>((resolve, reject) => {
        const req = request(`${url}${path}`, { headers: ['host', new URL(url).host, ...values.flatMap((value) => ['authorization', value])] }, (res) => {
          let text = ''
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }))
        })
        req.on('error', reject).end()
      })
    const expected = { status: 401, body: { error: REPEATED_HEADER } }
    t.same(await twice('/counts', [`Bearer ${TOKEN}`, `Bearer ${WRONG}`]), expected, 'right one first')
    t.same(await twice('/counts', [`Bearer ${WRONG}`, `Bearer ${TOKEN}`]), expected, 'right one second')
    t.same(await twice('/metrics', [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]), expected, 'the same one twice')
    t.same(await twice('/health', [`Bearer ${WRONG}`, 'x']), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' } }, '/health stays open')
    t.equal(REPEATED_HEADER, 'send one Authorization header, not several')
  })

  await t.test('/health stays open', async (t) => {
    t.same(await call(url, 'GET', '/health'), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' }, wwwAuthenticate: null })
    t.same(await call(url, 'GET', '/health', bearer(WRONG)), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' }, wwwAuthenticate: null })
    t.equal((await fetch(`${url}/health`, { method: 'HEAD' })).status, 200)
  })

  await t.test('taken with the right token (the scheme in any case)', async (t) => {
    const ok = bearer(TOKEN)
    const none = { wwwAuthenticate: null }
    t.same(await call(url, 'PUT', '/counts', ok, COUNTS), { status: 204, body: '', ...none })
    t.same(await call(url, 'PUT', '/workers/w1/counts', { authorization: `bearer ${TOKEN}` }, WORKER), { status: 204, body: '', ...none })
    t.same(await call(url, 'GET', '/counts', { authorization: `BEARER  ${TOKEN}` }), { status: 200, body: { downloading: 1, muxing: 3, uploading: 3 }, ...none })
    t.same((await waitFor(check.totals, totals(1, 3, 3), 500)).value, totals(1, 3, 3))
    const workers = (await call(url, 'GET', '/workers', ok)).body as { workers: Record<string, unknown>[] }
    t.same(workers.workers.map(({ age_ms: _, ...worker }) => worker), [
      { id: 'default', downloading: 1, muxing: 2, uploading: 3, ttl_ms: null },
      { id: 'w1', downloading: 0, muxing: 1, uploading: 0, ttl_ms: 10000 },
    ])
    t.same(await call(url, 'DELETE', '/workers/w1', ok), { status: 204, body: '', ...none })
    t.same(await call(url, 'DELETE', '/workers/w1', ok), { status: 404, body: { error: 'no worker w1 on this node' }, ...none })
    t.same(await call(url, 'GET', '/processes', ok), {
      status: 404,
      body: { error: 'this agent does not watch processes; start it with --watch-processes or TORNADO_WATCH_PROCESSES=1' },
      ...none,
    })
    t.same(await call(url, 'GET', '/no-such-route', ok), { status: 404, body: { error: 'no route GET /no-such-route' }, ...none })
    t.same(await call(url, 'PUT', '/counts', ok, '{"not":"valid"}'), { status: 400, body: { error: 'downloading is required' }, ...none })
    const metrics = await call(url, 'GET', '/metrics', ok)
    t.equal(metrics.status, 200)
    t.match(metrics.body, /^tornado_agent_jobs\{stage="muxing"\} 2$/m)
  })

  t.same(raw.filter((line) => line.includes(TOKEN) || line.includes(WRONG)), [], 'neither token is in any log line')
  t.equal(events(lines, 'config')[0]?.agent_token, 'set')
  t.same(events(lines, 'listen_without_token'), [])
})

t.test('without AGENT_TOKEN the interface is open, as before', async (t) => {
  const server = await startRedis(t)
  const { agent, lines } = await startTestAgent(t, server.url)
  t.same(await call(agent.url, 'PUT', '/counts', {}, COUNTS), { status: 204, body: '', wwwAuthenticate: null })
  t.same(await call(agent.url, 'GET', '/counts', bearer(WRONG)), { status: 200, body: { downloading: 1, muxing: 2, uploading: 3 }, wwwAuthenticate: null }, 'a token sent anyway is ignored')
  t.equal((await call(agent.url, 'GET', '/metrics')).status, 200)
  t.equal(events(lines, 'config')[0]?.agent_token, 'unset')
  t.equal(events(lines, 'config')[0]?.log_level, 'info', 'the effective level is in the start line')
  t.same(events(lines, 'listen_without_token'), [], 'loopback: no warning')
})

t.test('listening beyond loopback without AGENT_TOKEN is warned about at start', async (t) => {
  const server = await startRedis(t)
  const open = await startTestAgent(t, server.url, { AGENT_LISTEN: '0.0.0.0:0', TORNADO_NODE_ID: 'open-node' })
  const warnings = events(open.lines, 'listen_without_token')
  t.equal(warnings.length, 1)
  t.equal(warnings[0]?.level, WARN)
  const port = new URL(open.agent.url).port
  t.equal(warnings[0]?.listen, `http://0.0.0.0:${port}`)
  t.equal(
    warnings[0]?.msg,
    `the local interface listens on http://0.0.0.0:${port}, not on loopback, without AGENT_TOKEN: anyone who reaches it can set this node's counts; set AGENT_TOKEN or AGENT_LISTEN=127.0.0.1:${port}`,
  )
  const guarded = await startTestAgent(t, server.url, { AGENT_LISTEN: '0.0.0.0:0', TORNADO_NODE_ID: 'guarded-node', AGENT_TOKEN: TOKEN })
  t.same(events(guarded.lines, 'listen_without_token'), [], 'with a token: no warning')
  t.same(guarded.raw.filter((line) => line.includes(TOKEN)), [])
})

t.test('isLoopback', async (t) => {
  for (const address of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', 'localhost']) t.equal(isLoopback(address), true, address)
  for (const address of ['0.0.0.0', '::', '10.0.0.5', '::ffff:10.0.0.5', '128.0.0.1', 'fe80::1', '']) t.equal(isLoopback(address), false, address)
})

function captureReporterLog() {
  const lines: string[] = []
  const logger: ReporterLogger = { warn: (message) => lines.push(`warn ${message}`), info: (message) => lines.push(`info ${message}`) }
  return { logger, lines }
}

t.test('the Node client sends the token', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const { agent, raw } = await startTestAgent(t, server.url, { AGENT_TOKEN: TOKEN, HEARTBEAT_INTERVAL_MS: '200' })

  await t.test('with the token: reports are taken, and close removes the worker', async (t) => {
    const log = captureReporterLog()
    const reporter = createReporter({ url: agent.url, workerId: 'muxer-1', token: TOKEN, logger: log.logger })
    t.teardown(() => reporter.close())
    let release!: () => void
    const job = reporter.track('muxing', () => new Promise<void>((resolve) => (release = resolve)))
    t.same((await waitFor(check.totals, totals(0, 1, 0), 1000)).value, totals(0, 1, 0))
    release()
    await job
    t.same((await waitFor(check.totals, ZERO_TOTALS, 1000)).value, ZERO_TOTALS)
    await reporter.close()
    t.same((await call(agent.url, 'GET', '/workers', bearer(TOKEN))).body, { workers: [] }, 'DELETE carried the token')
    t.same(log.lines, [])
  })

  await t.test('without it (or empty, or wrong): one line saying why, jobs run, nothing counted', async (t) => {
    for (const token of [undefined, '', WRONG]) {
      const log = captureReporterLog()
      const reporter = createReporter({ url: agent.url, workerId: 'dl-1', token, retryMs: 100, logger: log.logger })
      t.teardown(() => reporter.close())
      let release!: () => void
      const job = reporter.track('downloading', () => new Promise<void>((resolve) => (release = resolve)))
      await sleep(400) // the first report and a few retries
      t.same(await check.totals(), ZERO_TOTALS)
      release()
      await job
      await reporter.close()
      const error = token === WRONG ? WRONG_TOKEN : MISSING_TOKEN // '' is no token, like an empty AGENT_TOKEN
      t.same(log.lines, [
        `warn tornado reporter ${agent.url}/workers/dl-1: cannot report to the agent (HTTP 401 ${JSON.stringify({ error })}); jobs run on, retrying every 100 ms`,
      ])
      t.same(log.lines.filter((line) => line.includes(TOKEN) || line.includes(WRONG)), [], 'no token in its log')
    }
  })

  t.same(raw.filter((line) => line.includes(TOKEN) || line.includes(WRONG)), [], 'nor in the agent\'s')
})

t.test('createReporter refuses a token that cannot be one, without showing it', async (t) => {
  const error = new TypeError('token is invalid: use the agent\'s AGENT_TOKEN, printable ASCII characters without spaces')
  t.throws(() => createReporter({ workerId: 'w', token: 'has a space in it' }), error)
  t.throws(() => createReporter({ workerId: 'w', token: 'line\nbreak-0123456789' }), error)
  t.throws(() => createReporter({ workerId: 'w', token: 'caf\u00e9-0123456789abcdef' }), error)
})
