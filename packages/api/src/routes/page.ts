import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'

/** The page's files ship in the package's public/, one level above both src/ and dist/ like package.json. */
const PUBLIC = new URL('../../public/', import.meta.url)

const FILES = [
  { url: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { url: '/app.js', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { url: '/app.css', file: 'app.css', type: 'text/css; charset=utf-8' },
] as const

/** Everything the page may load or connect to is on this server. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Small files, changed on deploys only: revalidate, never serve a page older than the API behind it.
  'cache-control': 'no-cache',
}

/** The dashboard page at `/`: one HTML file, one script, one stylesheet, read once at start. */
export default async function pageRoutes(fastify: FastifyInstance) {
  for (const { url, file, type } of FILES) {
    const body = readFileSync(new URL(file, PUBLIC))
    fastify.get(url, { schema: { hide: true } }, async (_request, reply) => reply.headers(PAGE_HEADERS).type(type).send(body))
  }
}
