import t from 'tap'
import { get, startTestApi } from './helper.js'

interface OpenApi {
  openapi: string
  paths: Record<string, Record<string, { security?: unknown; responses: Record<string, { description: string; content?: Record<string, { example?: unknown; examples?: Record<string, { value: unknown }> }> }> }>>
  components: { securitySchemes: unknown }
}

const examplesOf = (media: { example?: unknown; examples?: Record<string, { value: unknown }> } | undefined) =>
  media?.examples ? Object.values(media.examples).map((example) => example.value) : [media?.example]

t.test('OpenAPI document and Swagger UI, all served locally', async (t) => {
  const api = await startTestApi(t)
  const res = await get(`${api.url}/swagger/json`)
  t.equal(res.status, 200)
  const doc = res.body as OpenApi

  t.test('every API route, and only those', async (t) => {
    t.equal(doc.openapi, '3.0.3')
    t.same(
      Object.fromEntries(Object.entries(doc.paths).map(([path, methods]) => [path, Object.keys(methods).sort()])),
      {
        '/health': ['get'],
        '/ready': ['get'],
        '/dashboard/cluster': ['get'],
        '/dashboard/nodes': ['get'],
        '/dashboard/cluster/stream': ['get'],
        '/dashboard/session': ['delete', 'post'],
      },
    )
  })

  t.test("the seed's example bodies and every error response", async (t) => {
    const cluster = doc.paths['/dashboard/cluster']!.get!.responses
    t.same(Object.keys(cluster).sort(), ['200', '401', '429', '503'])
    t.same(examplesOf(cluster['429']!.content!['application/json']), [{ error: 'Too many failed authentications from this address; retry in 60 s' }])
    t.same(examplesOf(cluster['200']!.content!['application/json']), [{ total_downloading: 45, total_muxing: 12, total_uploading: 8 }])
    t.same(examplesOf(cluster['401']!.content!['application/json']), [
      { error: 'Missing x-api-key header' },
      { error: 'Invalid API Key' },
      { error: 'Invalid or expired session' },
    ])
    t.same(examplesOf(cluster['503']!.content!['application/json']), [{ error: 'Redis unavailable' }])

    const nodes = doc.paths['/dashboard/nodes']!.get!.responses
    t.same(Object.keys(nodes).sort(), ['200', '401', '429', '503'])
    t.match(examplesOf(nodes['200']!.content!['application/json'])[0], { nodes: [{ id: 'worker-1', status: 'online' }, { status: 'stale' }] })

    const stream = doc.paths['/dashboard/cluster/stream']!.get!.responses
    t.same(Object.keys(stream).sort(), ['200', '400', '401', '429', '503'])
    t.match(examplesOf(stream['200']!.content!['text/event-stream'])[0], /^event: cluster\ndata: \{"total_downloading":45,"total_muxing":12,"total_uploading":8\}\n\n/)

    const session = doc.paths['/dashboard/session']!
    t.same(Object.keys(session.post!.responses).sort(), ['200', '401', '429', '503'])
    t.same(examplesOf(session.post!.responses['401']!.content!['application/json']), [{ error: 'Missing x-api-key header' }, { error: 'Invalid API Key' }])
    t.same(Object.keys(session.delete!.responses), ['204'])
  })

  t.test('the apiKey security scheme (header x-api-key) and the session cookie', async (t) => {
    t.same(doc.components.securitySchemes, {
      apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'One of the keys in TORNADO_API_KEYS' },
      sessionCookie: {
        type: 'apiKey',
        in: 'cookie',
        name: 'tornado_session',
        description: 'Set by POST /dashboard/session; accepted by /dashboard/* GETs only',
      },
    })
    for (const path of ['/dashboard/cluster', '/dashboard/nodes', '/dashboard/cluster/stream']) {
      t.same(doc.paths[path]!.get!.security, [{ apiKey: [] }, { sessionCookie: [] }], path)
    }
    t.same(doc.paths['/dashboard/session']!.post!.security, [{ apiKey: [] }])
    t.equal(doc.paths['/health']!.get!.security, undefined, '/health needs no key')
  })

  t.test('the UI at /swagger loads nothing from outside this server', async (t) => {
    const page = await fetch(`${api.url}/swagger`)
    t.equal(page.status, 200)
    const html = await page.text()
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!)
    t.ok(urls.length >= 3, `${urls.length} assets`)
    for (const url of urls) {
      t.notMatch(url, /^(https?:)?\/\//, `${url} is local`)
      const asset = await fetch(new URL(url, `${api.url}/swagger/`))
      t.equal(asset.status, 200, url)
      await asset.arrayBuffer()
    }
    const initializer = await (await fetch(`${api.url}/swagger/static/swagger-initializer.js`)).text()
    t.match(initializer, /url: resolveUrl\('\.\/json'\)/, 'the UI reads our document, /swagger/json')
    t.match(initializer, /validatorUrl: null/, 'no online validator badge')
    const code = initializer.split('\n').filter((line) => !line.trim().startsWith('//'))
    t.same(code.filter((line) => /https?:\/\//.test(line)), [], 'no other host outside comments')
  })
})

t.test('the dashboard page: three files, strict headers, nothing from elsewhere', async (t) => {
  const api = await startTestApi(t)
  const files = { '/': 'text/html; charset=utf-8', '/app.js': 'text/javascript; charset=utf-8', '/app.css': 'text/css; charset=utf-8' }
  for (const [path, type] of Object.entries(files)) {
    const res = await fetch(`${api.url}${path}`)
    t.equal(res.status, 200, path)
    t.equal(res.headers.get('content-type'), type, path)
    t.equal(
      res.headers.get('content-security-policy'),
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    )
    t.equal(res.headers.get('x-content-type-options'), 'nosniff')
    const text = await res.text()
    t.notMatch(text, /(?:src|href)="(?:https?:)?\/\//, `${path} loads nothing from another host`)
    if (path === '/') t.match(text, /<script src="\/app\.js" defer><\/script>/)
  }
  const page = await fetch(`${api.url}/`)
  t.match(await page.text(), /<label for="api-key">API key<\/label>/)
})
