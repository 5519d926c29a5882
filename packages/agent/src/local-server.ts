import Fastify, { LogController, type FastifyError, type FastifyReply } from 'fastify'
import { Type } from 'typebox'
import { JobCounts, MAX_JOB_COUNT } from '@tornado/shared'
import type { Logger } from 'pino'

export const BODY_LIMIT_BYTES = 1024

export interface LocalServerOptions {
  logger: Logger
  nodeId: string
  getCounts: () => JobCounts
  /** Takes new counts from PUT /counts; the caller beats at once. */
  setCounts: (counts: JobCounts) => void
  /** When simulating, PUT /counts is refused. */
  simulating: boolean
  redisUp: () => boolean
}

const Health = Type.Object({
  status: Type.Literal('ok'),
  node_id: Type.String(),
  redis: Type.Union([Type.Literal('up'), Type.Literal('down')]),
})

const EXAMPLE = '{"downloading":0,"muxing":0,"uploading":0}'

/** The agent's local HTTP interface: the node's job runner reports its counts here. */
export function buildLocalServer(options: LocalServerOptions) {
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Errors Fastify raises before routing (a malformed URL) get the same {"error"} body as the rest.
    frameworkErrors: (err, _request, reply) => {
      void (reply as FastifyReply).code(400).send({ error: err.code === 'FST_ERR_BAD_URL' ? 'the URL is malformed' : err.message })
    },
    bodyLimit: BODY_LIMIT_BYTES,
    // Fastify's defaults would turn "3" into 3 and silently drop unknown fields; a bad report must be refused.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  })
  app.removeContentTypeParser('text/plain') // JSON only

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` })
  })
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const [status, message] = describeRequestError(err)
    if (status >= 500) request.log.error({ err }, 'local HTTP request failed')
    void reply.code(status).send({ error: message })
  })

  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({
    status: 'ok' as const,
    node_id: options.nodeId,
    redis: options.redisUp() ? ('up' as const) : ('down' as const),
  }))

  app.get('/counts', { schema: { response: { 200: JobCounts } } }, async () => options.getCounts())

  app.put(
    '/counts',
    {
      schema: { body: JobCounts },
      preValidation: async (_request, reply) => {
        if (options.simulating) {
          return reply.code(409).send({
            error: 'this agent is simulating its workload (--simulate or TORNADO_SIMULATE=1), so it does not take PUT /counts',
          })
        }
      },
    },
    async (request, reply) => {
      options.setCounts(request.body as JobCounts)
      return reply.code(204).send()
    },
  )
  return app
}

/** Status and message for a failed request; client mistakes are 400 with a message naming what is wrong. */
export function describeRequestError(err: FastifyError): [number, string] {
  if (err.validation && err.validation.length > 0) return [400, describeValidation(err.validation[0]!)]
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

function describeValidation(issue: ValidationIssue): string {
  const field = issue.instancePath.replace(/^\//, '').replace(/\//g, '.')
  if (issue.keyword === 'required') return `${String(issue.params.missingProperty)} is required`
  if (issue.keyword === 'additionalProperties') {
    return `${String(issue.params.additionalProperty)} is not a known field; expected downloading, muxing and uploading`
  }
  if (field === '') return `body must be a JSON object like ${EXAMPLE}`
  if (['type', 'minimum', 'maximum', 'multipleOf'].includes(issue.keyword)) {
    return `${field} must be an integer from 0 to ${MAX_JOB_COUNT}`
  }
  return `${field} ${issue.message ?? 'is invalid'}`
}
