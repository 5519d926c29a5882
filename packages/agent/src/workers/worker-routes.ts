import type { FastifyInstance, FastifyReply, RawServerDefault } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { Type } from 'typebox'
import { JobCounts, MAX_JOB_COUNT } from '@tornado/shared'
import type { NodeCounts } from '../node-counts.js'
import { DEFAULT_TTL_MS, MAX_TTL_MS, MAX_WORKERS, MIN_TTL_MS, WORKER_ID_PATTERN, type ReportOutcome } from './worker-registry.js'

const WorkerParams = Type.Object({ workerId: Type.String({ pattern: WORKER_ID_PATTERN }) })

/** The body of PUT /workers/:workerId/counts: the counts of PUT /counts, and the lease. */
export const WorkerReport = Type.Object(
  {
    ...JobCounts.properties,
    ttl_ms: Type.Optional(
      Type.Integer({ minimum: MIN_TTL_MS, maximum: MAX_TTL_MS, description: `Lease: the worker leaves the counts after this long without a report (default ${DEFAULT_TTL_MS})` }),
    ),
  },
  { additionalProperties: false },
)

const WorkerSummary = Type.Object({
  id: Type.String(),
  ...JobCounts.properties,
  /** null for `default` reported by PUT /counts: it has no lease. */
  ttl_ms: Type.Union([Type.Integer(), Type.Null()]),
  age_ms: Type.Integer({ minimum: 0, description: 'Time since its last report' }),
})
const WorkerList = Type.Object({ workers: Type.Array(WorkerSummary) })

export interface WorkerRoutesOptions {
  counts: NodeCounts
  refuseIfSimulating: (reply: FastifyReply) => unknown
}

/** PUT /workers/:workerId/counts, DELETE /workers/:workerId, GET /workers. */
export function registerWorkerRoutes(app: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger>, { counts, refuseIfSimulating }: WorkerRoutesOptions): void {
  app.put(
    '/workers/:workerId/counts',
    { schema: { params: WorkerParams, body: WorkerReport }, preValidation: async (_request, reply) => refuseIfSimulating(reply) },
    async (request, reply) => {
      const { workerId } = request.params as { workerId: string }
      const { ttl_ms: ttlMs = DEFAULT_TTL_MS, ...reported } = request.body as JobCounts & { ttl_ms?: number }
      const outcome = counts.report(workerId, reported, ttlMs)
      return outcome.ok ? reply.code(204).send() : refuseReport(reply, outcome)
    },
  )

  app.delete('/workers/:workerId', { schema: { params: WorkerParams } }, async (request, reply) => {
    const { workerId } = request.params as { workerId: string }
    if (counts.remove(workerId)) return reply.code(204).send()
    return reply.code(404).send({ error: `no worker ${workerId} on this node` })
  })

  app.get('/workers', { schema: { response: { 200: WorkerList } } }, async () => ({
    workers: counts.listWorkers().map((worker) => ({ id: worker.id, ...worker.counts, ttl_ms: worker.ttlMs ?? null, age_ms: worker.ageMs })),
  }))
}

/** The answer to a report the registry refused; nothing changed. */
export function refuseReport(reply: FastifyReply, outcome: Exclude<ReportOutcome, { ok: true }>) {
  if (outcome.reason === 'full') {
    return reply.code(429).send({
      error: `this node already has ${MAX_WORKERS} workers, the most an agent keeps; DELETE /workers/<id> the ones that stopped, or let their leases expire`,
    })
  }
  return reply.code(400).send({
    error: `${outcome.stage} would be ${outcome.sum} summed over this node's workers, over the limit of ${MAX_JOB_COUNT}`,
  })
}
