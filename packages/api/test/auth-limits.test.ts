import { connect } from 'node:net'
import t from 'tap'
import { get, KEY_A, KEY_B, startTestApi } from './helper.js'

const INVALID = { error: 'Invalid API Key' }
const LOCKED = /^Too many failed authentications from this address; retry in (60|59) s$/

/** Sends raw header bytes (latin1) and returns the status line and body. */
function rawGet(url: string, headerLines: Buffer): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(Buffer.concat([Buffer.from(`GET /dashboard/cluster HTTP/1.1\r\nhost: ${hostname}\r\nconnection: close\r\n`), headerLines, Buffer.from('\r\n')]))
    })
    let text = ''
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
    socket.on('end', () => resolve({ status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\r\n\r\n') + 4) }))
    socket.on('error', reject)
  })
}

t.test('failed authentications are limited per client address; good keys are not slowed', async (t) => {
  const api = await startTestApi(t, { AUTH_FAILURE_LIMIT: '3' })
  const inject = (remoteAddress: string, key?: string) =>
    api.app.inject({ method: 'GET', url: '/dashboard/cluster', remoteAddress, headers: key === undefined ? {} : { 'x-api-key': key } })

  for (let i = 0; i < 3; i++) {
    const res = await inject('10.1.1.1', `sk_guess_${i}`)
    t.same([res.statusCode, res.json()], [401, INVALID], `failure ${i + 1} is a plain 401`)
  }
  const over = await inject('10.1.1.1', 'sk_guess_3')
  t.equal(over.statusCode, 429)
  t.match(over.json(), { error: LOCKED })
  const retryAfter = Number(over.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${over.headers['retry-after']} (seconds, within the window)`)
  t.match(over.json().error, `retry in ${retryAfter} s`, 'the same seconds as the message')
  t.same(Object.keys(over.json()), ['error'])
  const rightKeyWhileLocked = await inject('10.1.1.1', KEY_A)
  t.equal(rightKeyWhileLocked.statusCode, 429, 'a locked-out address gets 429 even with a right key (guessing must not go on)')

  // Another address, meanwhile: never slowed, however often it asks.
  for (let i = 0; i < 30; i++) {
    if ((await inject('10.2.2.2', i % 2 ? KEY_A : KEY_B)).statusCode !== 200) t.fail(`good key request ${i} refused`)
  }
  t.pass('30 good requests from another address: all 200')
  // Good keys do not count: an address with many successes can still fail a few times before 429.
  for (let i = 0; i < 3; i++) t.equal((await inject('10.2.2.2', 'sk_nope')).statusCode, 401)
  t.equal((await inject('10.2.2.2', 'sk_nope')).statusCode, 429)
  // A request with no key at all is not a failed authentication.
  for (let i = 0; i < 5; i++) t.equal((await inject('10.3.3.3')).statusCode, 401)
  t.equal((await inject('10.3.3.3', KEY_A)).statusCode, 200)
  t.ok(api.logs.withMessage('too many failed authentications: address locked out').length === 2, 'one warning per lockout')
})

t.test('x-api-key edge cases over real HTTP', async (t) => {
  const api = await startTestApi(t)
  const cluster = `${api.url}/dashboard/cluster`
  const longKey = `sk_${'L'.repeat(10 * 1024)}`

  t.test('surrounding whitespace is trimmed (HTTP strips it; inject does not, and we trim anyway)', async (t) => {
    const raw = await rawGet(cluster, Buffer.from(`x-api-key:   ${KEY_A} \t\r\n`))
    t.equal(raw.status, 200)
    const injected = await api.app.inject({ method: 'GET', url: '/dashboard/cluster', headers: { 'x-api-key': ` \t${KEY_A}  ` } })
    t.equal(injected.statusCode, 200)
    const inside = await get(cluster, { 'x-api-key': `${KEY_A.slice(0, 5)} ${KEY_A.slice(5)}` })
    t.same([inside.status, inside.body], [401, INVALID], 'whitespace inside a key is part of it')
  })

  t.test('a 10 KiB value: 401 Invalid API Key', async (t) => {
    const res = await get(cluster, { 'x-api-key': longKey })
    t.same([res.status, res.body], [401, INVALID])
  })

  t.test('non-ASCII bytes: 401 Invalid API Key, no crash', async (t) => {
    const bytes = await rawGet(cluster, Buffer.concat([Buffer.from('x-api-key: sk_'), Buffer.from([0xff, 0xfe, 0xe9, 0x80]), Buffer.from('_utf8_\u00e9\r\n', 'utf8')]))
    t.same([bytes.status, JSON.parse(bytes.body)], [401, INVALID])
    const utf8Key = await rawGet(cluster, Buffer.from(`x-api-key: ${KEY_A}\u00e9\r\n`, 'utf8'))
    t.same([utf8Key.status, JSON.parse(utf8Key.body)], [401, INVALID])
    t.equal((await get(cluster, { 'x-api-key': KEY_A })).status, 200, 'still serving')
  })

  t.test('two x-api-key headers: 401 (covered in auth.test.ts), and a control character is refused by Node: 400', async (t) => {
    const res = await rawGet(cluster, Buffer.from(`x-api-key: sk_a\x01b\r\n`))
    t.equal(res.status, 400)
    t.same(JSON.parse(res.body), { error: 'Bad Request' })
  })

  t.test('no key, long or odd, reaches the log', async (t) => {
    const text = api.logs.text.join('\n')
    t.notOk(text.includes(KEY_A) || text.includes('LLLLLLLL') || text.includes('_utf8_'))
  })
})
