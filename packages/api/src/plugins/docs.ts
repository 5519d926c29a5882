import { readFileSync } from 'node:fs'
import { fastifyPlugin } from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { SESSION_COOKIE } from '../session.js'

// package.json sits one level above both src/ and dist/.
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

/**
 * The OpenAPI document, built from the routes' own schemas (register before the routes), at /swagger/json, and
 * Swagger UI at /swagger with its assets served from the package: nothing is loaded from a CDN.
 */
async function docsPlugin(fastify: FastifyInstance) {
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Tornado cluster API',
        description: 'What every worker node of the Tornado video pipeline is downloading, muxing and uploading, live.',
        version: pkg.version,
      },
      tags: [
        { name: 'dashboard', description: 'Cluster totals and nodes, for the dashboard' },
        { name: 'session', description: 'A cookie for browsers, which cannot put a header on an EventSource' },
        { name: 'health', description: 'Liveness' },
      ],
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'One of the keys in TORNADO_API_KEYS' },
          sessionCookie: {
            type: 'apiKey',
            in: 'cookie',
            name: SESSION_COOKIE,
            description: 'Set by POST /dashboard/session; accepted by /dashboard/* GETs only',
          },
        },
      },
    },
  })
  await fastify.register(fastifySwaggerUi, {
    routePrefix: '/swagger',
    staticCSP: true,
    uiConfig: { docExpansion: 'list', deepLinking: false, tryItOutEnabled: false },
  })
}

export default fastifyPlugin(docsPlugin, { name: 'tornado-docs', fastify: '5.x' })
