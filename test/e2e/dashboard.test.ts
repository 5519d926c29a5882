import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { chromium, type Page } from 'playwright-core'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { runKeysCommand } from '../../packages/api/src/keys-cli.js'
import { listeningUrl, startProcess, until } from './processes.js'

// The dashboard as an operator sees it: Debian's chromium (headless, driven by playwright-core) on the page the
// API serves, with a real redis-server and two tornado-agent processes behind it.
// Functions given to page.evaluate run in the page. These are the few browser globals they use: the test
// compilation has no DOM lib, and adding it would let browser globals slip into Node code everywhere else.
interface PageElement {
  textContent: string | null
  querySelector(selector: string): PageElement | null
  checkVisibility(): boolean
  classList: { contains(name: string): boolean }
}
declare const document: {
  querySelector(selector: string): PageElement | null
  querySelectorAll(selector: string): PageElement[]
  body: PageElement
  cookie: string
}
declare const window: { rowA?: PageElement | null }
declare const sessionStorage: { length: number; getItem(key: string): string | null }
declare const localStorage: { length: number }

const API_KEY = 'sk_browser_e2e_3c9a51f07d'
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../artifacts/', import.meta.url))

interface NodeView {
  id: string
  hostname: string
  ip: string
  downloading: string
  muxing: string
  uploading: string
  status: string
}

/** What the page shows: the three counters, the node counts and the table, read from the DOM. */
const readPage = (page: Page) =>
  page.evaluate(() => {
    const text = (selector: string) => document.querySelector(selector)?.textContent ?? ''
    const cell = (row: PageElement, field: string) => row.querySelector(`[data-field="${field}"]`)?.textContent ?? ''
    return {
      totals: [text('#total-downloading'), text('#total-muxing'), text('#total-uploading')],
      online: text('#nodes-online'),
      stale: text('#nodes-stale'),
      nodes: [...document.querySelectorAll('#nodes tbody tr')].map((row) => ({
        id: row.querySelector('th')?.textContent ?? '',
        hostname: cell(row, 'hostname'),
        ip: cell(row, 'ip'),
        downloading: cell(row, 'downloading'),
        muxing: cell(row, 'muxing'),
        uploading: cell(row, 'uploading'),
        status: cell(row, 'status'),
      })),
    }
  })

const visible = (page: Page, selector: string) => page.locator(selector).isVisible()

t.test('the dashboard in headless Chromium', async (t) => {
  const redis = await RedisServer.start()
  t.teardown(() => redis.stop())
  const common = { REDIS_URL: redis.url, LOG_LEVEL: 'info' }
  // A fixed port, so that a restarted API is found by the page where the old one was.
  const apiEnv = { ...common, TORNADO_API_KEYS: API_KEY, PORT: String(await freePort()), HOST: '127.0.0.1' }
  const suite = t
  let api = startProcess(t, 'api', apiEnv)
  const agents = await Promise.all(
    ['node-a', 'node-b'].map(async (nodeId) => {
      const listen = `127.0.0.1:${await freePort()}`
      startProcess(t, 'agent', { ...common, TORNADO_NODE_ID: nodeId, AGENT_LISTEN: listen })
      return { nodeId, url: `http://${listen}` }
    }),
  )
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.teardown(() => browser.close())
  const apiUrl = await listeningUrl(api)

  const putCounts = async (index: number, counts: { downloading: number; muxing: number; uploading: number }) => {
    const agent = agents[index]!
    await until(`agent ${agent.nodeId} answering`, async () => ((await fetch(`${agent.url}/counts`)).ok ? true : undefined), 20_000)
    const res = await fetch(`${agent.url}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(counts) })
    t.equal(res.status, 204, `PUT /counts on ${agent.nodeId}`)
  }
  await putCounts(0, { downloading: 3, muxing: 1, uploading: 0 })
  await putCounts(1, { downloading: 2, muxing: 0, uploading: 5 })
  // The hostname and address each agent reports, as the API has them.
  const listed = (await (await fetch(`${apiUrl}/dashboard/nodes`, { headers: { 'x-api-key': API_KEY } })).json()) as { nodes: NodeView[] }
  const reported = Object.fromEntries(listed.nodes.map((node) => [node.id, { hostname: node.hostname, ip: node.ip }]))
  t.same(Object.keys(reported), ['node-a', 'node-b'])

  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } })
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (err) => pageErrors.push(err.message))
  const requests: string[] = []
  page.on('request', (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`))
  await page.goto(apiUrl)
  mkdirSync(ARTIFACTS, { recursive: true })

  await t.test('a wrong key shows the error, and nothing runs', async (t) => {
    t.equal(await visible(page, '#login'), true, 'the page asks for the key')
    await page.fill('#api-key', 'sk_not_the_key')
    await page.click('#login button[type="submit"]')
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent !== '', null, { timeout: 5_000 })
    t.equal(await page.textContent('#login-error'), 'Wrong API key: the API rejected it. Check the key and try again.')
    t.equal(await visible(page, '#dashboard'), false)
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'a rejected key is not kept')
    await page.screenshot({ path: `${ARTIFACTS}dashboard-wrong-key.png` })
    const before = requests.length
    await new Promise((resolve) => setTimeout(resolve, 1_200))
    t.same(requests.slice(before), [], 'no request after the rejection')
  })

  await t.test('the right key: counters and node table show the agents’ counts', async (t) => {
    await page.fill('#api-key', API_KEY)
    await page.click('#login button[type="submit"]')
    await page.waitForFunction(() => document.querySelector('#total-uploading')?.textContent === '5', null, { timeout: 5_000 })
    await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length === 2, null, { timeout: 5_000 })
    const shown = await readPage(page)
    t.same(shown, {
      totals: ['5', '1', '5'],
      online: '2',
      stale: '0',
      nodes: [
        { id: 'node-a', ...reported['node-a'], downloading: '3', muxing: '1', uploading: '0', status: 'online' },
        { id: 'node-b', ...reported['node-b'], downloading: '2', muxing: '0', uploading: '5', status: 'online' },
      ],
    })
    t.equal(await page.evaluate(() => sessionStorage.getItem('tornado.apiKey')), API_KEY, 'kept in sessionStorage')
    t.equal(await page.evaluate(() => localStorage.length), 0, 'and nowhere else')
    t.equal(await page.evaluate(() => document.cookie), '', 'the session cookie is HttpOnly')
    t.ok(requests.includes('GET /dashboard/cluster/stream'), 'the page streams')
    t.notOk(requests.some((request) => request.includes(API_KEY)), 'the key is in no URL')
  })

  await t.test('a change on an agent shows within two seconds, in the same rows', async (t) => {
    await page.evaluate(() => {
      window.rowA = document.querySelector('tr[data-node-id="node-a"]')
    })
    await putCounts(0, { downloading: 7, muxing: 4, uploading: 2 })
    const changedAt = Date.now()
    await page.waitForFunction(() => document.querySelector('#total-downloading')?.textContent === '9', null, { timeout: 2_000 })
    await page.waitForFunction(() => document.querySelector('tr[data-node-id="node-a"] [data-field="muxing"]')?.textContent === '4', null, {
      timeout: 2_000,
    })
    t.ok(Date.now() - changedAt <= 2_000, `followed in ${Date.now() - changedAt} ms`)
    const shown = await readPage(page)
    t.same(shown.totals, ['9', '4', '7'])
    t.same(shown.nodes.map((node) => [node.id, node.downloading, node.muxing, node.uploading]), [
      ['node-a', '7', '4', '2'],
      ['node-b', '2', '0', '5'],
    ])
    t.equal(
      await page.evaluate(() => window.rowA === document.querySelector('tr[data-node-id="node-a"]')),
      true,
      'the row was updated in place',
    )
    // Let the chart gather a few points before the picture is taken.
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    t.match(await page.getAttribute('#line-downloading', 'd'), /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$/, 'the chart has a line')
    await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true })
  })

  await t.test('Redis away: the page says so, keeps the stream and recovers', async (t) => {
    await redis.stop()
    await page.waitForFunction(() => document.querySelector('#problem')?.checkVisibility() === true, null, { timeout: 3_000 })
    t.equal(await page.textContent('#problem'), 'Redis is unavailable. The API keeps retrying; the figures below are the last ones received.')
    await page.screenshot({ path: `${ARTIFACTS}dashboard-redis-down.png`, fullPage: true })
    await redis.restart() // empty: the agents re-register within about a second
    await page.waitForFunction(() => document.querySelector('#total-downloading')?.textContent === '9' && !document.querySelector('#problem')?.checkVisibility(), null, {
      timeout: 5_000,
    })
    t.same((await readPage(page)).totals, ['9', '4', '7'])
  })

  await t.test('no update for a few seconds: the page says its data is stale', async (t) => {
    api.child.kill('SIGSTOP') // the connection stays open, nothing arrives
    try {
      await page.waitForFunction(() => document.body.classList.contains('is-stale'), null, { timeout: 5_000 })
      t.match(await page.textContent('#updated'), /^No update for \d+ s: the figures may be out of date$/)
    } finally {
      api.child.kill('SIGCONT')
    }
    await page.waitForFunction(() => !document.body.classList.contains('is-stale'), null, { timeout: 5_000 })
    t.match(await page.textContent('#updated'), /^Updated /)
  })

  await t.test('the API away: the page says so, keeps retrying, and recovers when it returns', async (t) => {
    api.child.kill('SIGKILL')
    await api.exited
    await page.waitForFunction(() => document.querySelector('#problem')?.checkVisibility() === true, null, { timeout: 5_000 })
    t.match(await page.textContent('#problem'), /^(Lost the connection to the API\. Reconnecting…|The API cannot be reached\. Retrying…)$/)
    await page.screenshot({ path: `${ARTIFACTS}dashboard-api-down.png`, fullPage: true })
    // Owned by the whole file's test, not this subtest: its teardown would kill the API before the next subtests.
    api = startProcess(suite, 'api', apiEnv)
    await listeningUrl(api)
    await page.waitForFunction(() => !document.querySelector('#problem')?.checkVisibility() && !document.body.classList.contains('is-stale'), null, {
      timeout: 5_000,
    })
    t.same((await readPage(page)).totals, ['9', '4', '7'])
  })

  await t.test('log out: the key is forgotten and nothing runs any more', async (t) => {
    await page.click('#logout')
    t.equal(await visible(page, '#login'), true)
    t.equal(await visible(page, '#dashboard'), false)
    t.equal(await page.evaluate(() => sessionStorage.length), 0)
    await new Promise((resolve) => setTimeout(resolve, 300)) // the DELETE /dashboard/session goes out
    const before = requests.length
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    t.same(requests.slice(before), [], 'no request after logging out')
    t.ok(requests.includes('DELETE /dashboard/session'), 'the cookie was cleared')
  })

  await t.test('a key revoked while the page streams: the page stops and asks for a key again', async (t) => {
    let out = ''
    let err = ''
    const keys = (...argv: string[]) => runKeysCommand(argv, { REDIS_URL: redis.url }, { out: (s) => (out += s), err: (s) => (err += s) })
    t.equal(await keys('create', '--name', 'wall screen'), 0)
    const key = out.trim()
    const id = /^Created key ([0-9a-f]{16}) /.exec(err)?.[1] ?? ''
    await page.fill('#api-key', key)
    await page.click('#login button[type="submit"]')
    await page.waitForFunction(() => document.querySelector('#total-downloading')?.textContent === '9', null, { timeout: 5_000 })
    t.equal(await keys('revoke', id), 0)
    const revokedAt = Date.now()
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent !== '', null, { timeout: 5_000 })
    // The stream's last event says why, and the page starts over at once rather than after the stream's 2 s retry.
    const tookMs = Date.now() - revokedAt
    t.ok(tookMs < 2_000, `back at the login form ${tookMs} ms after the revoke`)
    t.equal(await page.textContent('#login-error'), 'Wrong API key: the API rejected it. Check the key and try again.')
    t.equal(await visible(page, '#dashboard'), false)
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'the revoked key is forgotten')
  })

  t.same(pageErrors, [], 'no script error on the page')
  await context.close()
})
