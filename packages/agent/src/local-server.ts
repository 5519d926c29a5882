import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { clientErrorHandler, connectionsCloser, ErrorBody, JobCounts, MAX_JOB_COUNT } from '@tornado/shared'
import type { Logger } from 'pino'
import type { NodeCounts } from './node-counts.js'
import { requireToken } from './token-auth.js'
import { DEFAULT_WORKER, MAX_TTL_MS, MIN_TTL_MS } from './workers/worker-registry.js'
import { refuseReport, registerWorkerRoutes } from './workers/worker-routes.js'

export const BODY_LIMIT_BYTES = 1024
/** On close, how long requests already received may take to finish before every connection left is closed. */
export const CLOSE_GRACE_MS = 1_000
/**
 * A worker must send its headers, and its whole request, within this: Fastify turns Node's request timeout off, so a
 * client stopping mid-body held its connection for ever. Reports are a few bytes; the answers are never long.
 */
export const CLIENT_REQUEST_TIMEOUT_MS = 10_000
/** How often Node looks for connections past that timeout (its default, 30 s, would make it 40 s). */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000

export interface LocalServerOptions {
  logger: Logger
  nodeId: string
  counts: NodeCounts
  /** When simulating, reports are refused. */
  simulating: boolean
  redisUp: () => boolean
  /** The last process scan's counts, or undefined when the agent does not watch processes. */
  watchedCounts: () => JobCounts | undefined
  /** GET /metrics: Prometheus text (AgentMetrics). */
  metrics: { contentType: string; render(): Promise<string> }
  /** AGENT_TOKEN: when set, every route but GET /health needs it (404s too, so routes cannot be probed). */
  token?: string
}

const Health = Type.Object({
  status: Type.Literal('ok'),
  node_id: Type.String(),
  redis: Type.Union([Type.Literal('up'), Type.Literal('down')]),
})

const EXAMPLE = '{"downloading":0,"muxing":0,"uploading":0}'

/** The agent's local HTTP interface: the node's workers report their counts here. */
export function buildLocalServer(options: LocalServerOptions) {
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Errors Fastify raises before routing (a malformed URL) get the same {"error"} body as the rest.
    frameworkErrors: (err, _request, reply) => {
      void (reply as FastifyReply).code(400).send({ error: err.code === 'FST_ERR_BAD_URL' ? 'the URL is malformed' : err.message })
    },
    clientErrorHandler, // an oversized header block or a garbled request: {"error"} too
    bodyLimit: BODY_LIMIT_BYTES,
    // A too-long worker id must reach its route and get a 400 saying so, not a 404 (the URL is bounded by the
    // HTTP server's 16 KiB header limit anyway).
    routerOptions: { maxParamLength: 16 * 1024 },
    // Fastify's defaults would turn "3" into 3 and silently drop unknown fields; a bad report must be refused.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    requestTimeout: CLIENT_REQUEST_TIMEOUT_MS,
    http: { headersTimeout: CLIENT_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
  })
  const closeConnections = connectionsCloser(app.server)
  // Closing must not wait on a client that never finishes its request (see connectionsCloser).
  app.addHook('preClose', async () => void closeConnections(CLOSE_GRACE_MS))
  app.removeContentTypeParser('text/plain') // JSON only
  if (options.token !== undefined) app.addHook('onRequest', requireToken(options.token))

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` })
  })
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const [status, message] = describeRequestError(err, bodyFields(request))
    if (status >= 500) request.log.error({ err }, 'local HTTP request failed')
    void reply.code(status).send({ error: message })
  })

  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({
    status: 'ok' as const,
    node_id: options.nodeId,
    redis: options.redisUp() ? ('up' as const) : ('down' as const),
  }))

  app.get('/metrics', async (_request, reply) => reply.type(options.metrics.contentType).send(await options.metrics.render()))

  app.get('/counts', { schema: { response: { 200: JobCounts } } }, async () => options.counts.total())

  app.put(
    '/counts',
    { schema: { body: JobCounts }, preValidation: async (_request, reply) => refuseIfSimulating(options, reply, 'PUT /counts') },
    async (request, reply) => {
      const outcome = options.counts.report(DEFAULT_WORKER, request.body as JobCounts, undefined)
      return outcome.ok ? reply.code(204).send() : refuseReport(reply, outcome)
    },
  )

  app.get('/processes', { schema: { response: { 200: JobCounts, 404: ErrorBody } } }, async (_request, reply) => {
    const watched = options.watchedCounts()
    if (watched !== undefined) return watched
    return reply.code(404).send({ error: 'this agent does not watch processes; start it with --watch-processes or TORNADO_WATCH_PROCESSES=1' })
  })

  registerWorkerRoutes(app, {
    counts: options.counts,
    refuseIfSimulating: (reply) => refuseIfSimulating(options, reply, 'worker reports'),
  })
  return app
}


function refuseIfSimulating(options: LocalServerOptions, reply: FastifyReply, what: string) {
  if (!options.simulating) return
  return reply.code(409).send({ error: `this agent is simulating its workload (--simulate or TORNADO_SIMULATE=1), so it does not take ${what}` })
}

/** The fields the route's body schema knows, for the message about an unknown one. */
function bodyFields(request: FastifyRequest): string[] {
  const body = request.routeOptions.schema?.body as { properties?: Record<string, unknown> } | undefined
  return Object.keys(body?.properties ?? {})
}

/** Status and message for a failed request; client mistakes are 400 with a message naming what is wrong. */
export function describeRequestError(err: FastifyError, fields: string[] = ['downloading', 'muxing', 'uploading']): [number, string] {
  if (err.validation && err.validation.length > 0) return [400, describeValidation(err.validation[0]!, err.validationContext, fields)]
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return [400, `body is larger than ${BODY_LIMIT_BYTES} bytes; expected a JSON object like ${EXAMPLE}`]
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return [400, 'content-type must be application/json']
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return [400, `body is empty; expected a JSON object like ${EXAMPLE}`]
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return [400, 'body is not valid JSON']
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) return [status, err.message]
  return [500, 'internal error']
}

interface ValidationIssue {
  instancePath: string
  keyword: string
  params: Record<string, unknown>
  message?: string
}

function describeValidation(issue: ValidationIssue, context: string | undefined, fields: string[]): string {
  const field = issue.instancePath.replace(/^\//, '').replace(/\//g, '.')
  if (context === 'params') return 'the worker id must be 1 to 64 letters, digits, or . _ : -'
  if (issue.keyword === 'required') return `${String(issue.params.missingProperty)} is required`
  if (issue.keyword === 'additionalProperties') {
    const counts = 'downloading, muxing and uploading'
    const expected = fields.includes('ttl_ms') ? `${counts}, and optionally ttl_ms` : counts
    return `${String(issue.params.additionalProperty)} is not a known field; expected ${expected}`
  }
  if (field === '') return `body must be a JSON object like ${EXAMPLE}`
  if (field === 'ttl_ms') return `ttl_ms must be an integer from ${MIN_TTL_MS} to ${MAX_TTL_MS} (milliseconds)`
  if (['type', 'minimum', 'maximum', 'multipleOf'].includes(issue.keyword)) {
    return `${field} must be an integer from 0 to ${MAX_JOB_COUNT}`
  }
  return `${field} ${issue.message ?? 'is invalid'}`
}
