import { connect } from 'node:net'
import { request } from 'node:http'
import t from 'tap'
import { RedisServer } from '@tornado/shared/testing'
import { buildApp, loadApiConfig } from '../src/index.js'
import { get, KEY_A, LogCapture, startTestApi } from './helper.js'

/** Sends `path` exactly as given (fetch would normalise it). */
function rawGet(base: string, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(`${base}${path}`, { method: init.method ?? 'GET', headers: init.headers ?? {} }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => (text += chunk.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end(init.body)
  })
}

/** Writes bytes to the server and returns everything it answers before closing. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    let answer = ''
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
    socket.on('close', () => resolve(answer))
    socket.on('error', reject)
  })
}

t.test('every error body is {"error": "..."}', async (t) => {
  const api = await startTestApi(t)

  t.test('unknown route: 404', async (t) => {
    const res = await get(`${api.url}/nope`)
    t.equal(res.status, 404)
    t.equal(res.text, '{"error":"Route GET /nope not found"}')
    const post = await get(`${api.url}/dashboard/clusters`, { 'x-api-key': KEY_A })
    t.equal(post.status, 404)
    t.same(post.body, { error: 'Route GET /dashboard/clusters not found' })
  })

  t.test('wrong method on a known path: 404', async (t) => {
    const res = await rawGet(api.url, '/dashboard/cluster', { method: 'POST', headers: { 'x-api-key': KEY_A } })
    t.equal(res.status, 404)
    t.equal(res.text, '{"error":"Route POST /dashboard/cluster not found"}')
  })

  t.test('a URL that does not decode: 400', async (t) => {
    const res = await rawGet(api.url, '/%E0%A4%A')
    t.equal(res.status, 400)
    t.equal(res.text, `{"error":"'/%E0%A4%A' is not a valid url component"}`)
  })

  t.test('a body that is not the JSON its content-type claims: 400', async (t) => {
    const res = await rawGet(api.url, '/health', {
      method: 'POST',
      body: '{bad',
      headers: { 'content-type': 'application/json' },
    })
    t.equal(res.status, 400)
    t.equal(res.text, `{"error":"Body is not valid JSON but content-type is set to 'application/json'"}`)
  })

  t.test('a request Node cannot parse: 400', async (t) => {
    const port = Number(new URL(api.url).port)
    const answer = await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n')
    t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
    t.equal(answer.split('\r\n\r\n')[1], '{"error":"Bad Request"}')
  })
})

t.test('an unexpected error: 500 without its message, logged in full; a logged key is redacted', async (t) => {
  const redisServer = await RedisServer.start()
  const logs = new LogCapture()
  const app = await buildApp({
    config: loadApiConfig({ REDIS_URL: redisServer.url, TORNADO_API_KEYS: KEY_A }),
    logger: { stream: logs.stream },
  })
  t.teardown(async () => {
    await app.close()
    await redisServer.stop()
  })
  app.get('/boom', async () => {
    throw new Error('unexpected reply from redis://10.0.0.9:6379')
  })
  app.get('/log-headers', async (request) => {
    request.log.info({ headers: request.headers }, 'headers seen')
    return { logged: true }
  })
  await app.inject({ method: 'GET', url: '/log-headers', headers: { 'x-api-key': KEY_A } })
  const [headersLine] = logs.withMessage('headers seen')
  t.match(headersLine, { headers: { 'x-api-key': '[Redacted]' } }, 'pino redacts the key even where code logs headers')
  t.notOk(logs.text.join('\n').includes(KEY_A))

  const res = await app.inject({ method: 'GET', url: '/boom' })
  t.equal(res.statusCode, 500)
  t.equal(res.body, '{"error":"Internal Server Error"}')
  const logged = logs.withMessage('request failed')
  t.equal(logged.length, 1)
  t.match(logged[0], { level: 50, err: { message: 'unexpected reply from redis://10.0.0.9:6379' } }, 'logged for operators')
})
