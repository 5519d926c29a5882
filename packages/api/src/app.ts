import type { Server } from 'node:http'
import { fastify, LogController, type FastifyHttpOptions } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySensible from '@fastify/sensible'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { connectionsCloser, type LogLevel } from '@tornado/shared'
import type { ApiConfig } from './config.js'
import authPlugin from './plugins/auth.js'
import docsPlugin from './plugins/docs.js'
import errorsPlugin, { clientErrorHandler, frameworkErrors } from './plugins/errors.js'
import metricsPlugin from './plugins/metrics.js'
import redisPlugin from './plugins/redis.js'
import requestLogPlugin from './plugins/request-log.js'
import dashboardClusterRoutes from './routes/dashboard-cluster.js'
import dashboardNodesRoutes from './routes/dashboard-nodes.js'
import dashboardSessionRoutes from './routes/dashboard-session.js'
import dashboardStreamRoutes from './routes/dashboard-stream.js'
import healthRoutes from './routes/health.js'
import metricsRoutes from './routes/metrics.js'
import pageRoutes from './routes/page.js'
import readyRoutes from './routes/ready.js'

export interface BuildAppOptions {
  config: ApiConfig
  /** Where log lines go (default stdout) and at what level (default config.logLevel): tests capture them. */
  logger?: { stream?: { write(line: string): void }; level?: LogLevel }
  /** Time between the event stream's ticks (default 1 s; tests shorten it). */
  streamIntervalMs?: number
  /** How long a client may take to send its headers, and its whole request (default CLIENT_REQUEST_TIMEOUT_MS; tests shorten it). */
  requestTimeoutMs?: number
}

/**
 * On close, how long requests already received may take to finish before every connection left is closed. Covers a
 * Redis read that hangs until its 1 s command timeout and answers 503.
 */
export const STOP_GRACE_MS = 1_500
/**
 * A client must send its headers, and its whole request, within this. Node's defaults (Fastify turns the request
 * timeout off) let a client that sends a byte now and then hold a connection for minutes, or forever mid-body.
 * Every request here is a GET or a tiny JSON body. The timeout ends at the request: a long response (the event
 * stream) is not cut.
 */
export const CLIENT_REQUEST_TIMEOUT_MS = 10_000
/** How often Node looks for connections past those timeouts (its default, 30 s, would triple the wait). */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000

/** Paths of secrets pino replaces with "[Redacted]" wherever a log line would carry them. */
const REDACTED_PATHS = [
  'req.headers["x-api-key"]',
  'request.headers["x-api-key"]',
  'headers["x-api-key"]',
  'req.headers.cookie',
  'request.headers.cookie',
  'headers.cookie',
  'res.headers["set-cookie"]',
  'reply.headers["set-cookie"]',
]

/** Builds the API with its plugins and routes; never listens (server.ts does, tests use inject or listen). */
export async function buildApp({ config, logger, streamIntervalMs, requestTimeoutMs = CLIENT_REQUEST_TIMEOUT_MS }: BuildAppOptions) {
  const options: FastifyHttpOptions<Server> = {
    logger: {
      level: logger?.level ?? config.logLevel,
      redact: REDACTED_PATHS,
      // ISO times, as the agent writes them: one format across the fleet's logs.
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      ...(logger?.stream ? { stream: logger.stream } : {}),
    },
    logController: new LogController({ disableRequestLogging: true }), // requestLogPlugin writes one line instead
    clientErrorHandler,
    frameworkErrors,
    // Idle keep-alive connections (a dashboard polls every second) close at once; the rest after STOP_GRACE_MS (below).
    forceCloseConnections: 'idle',
    requestTimeout: requestTimeoutMs,
    http: { headersTimeout: requestTimeoutMs, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
  }
  const app = fastify(options).withTypeProvider<TypeBoxTypeProvider>()
  const closeConnections = connectionsCloser(app.server)

  await app.register(metricsPlugin) // first: its hook counts every route, and the Redis plugin times reads through it
  await app.register(requestLogPlugin)
  await app.register(fastifySensible)
  await app.register(errorsPlugin)
  await app.register(redisPlugin, { url: config.redisUrl, clusterNodes: config.redisClusterNodes, sentinel: config.redisSentinel, layout: config.layout, staleAfterMs: config.staleAfterMs, onlineWithinMs: config.onlineWithinMs, totalsCacheMs: config.totalsCacheMs })
  await app.register(fastifyCookie)
  await app.register(authPlugin, { apiKeyDigests: config.apiKeyDigests, keyPrefix: config.layout.prefix, failureLimit: config.authFailureLimit })
  await app.register(docsPlugin) // before the routes: it collects their schemas as they are added
  await app.register(healthRoutes)
  await app.register(readyRoutes)
  if (config.metricsEnabled) await app.register(metricsRoutes)
  await app.register(dashboardClusterRoutes)
  await app.register(dashboardNodesRoutes, { onlineWithinMs: config.onlineWithinMs })
  await app.register(dashboardStreamRoutes, { onlineWithinMs: config.onlineWithinMs, ...(streamIntervalMs ? { intervalMs: streamIntervalMs } : {}) })
  await app.register(dashboardSessionRoutes)
  await app.register(pageRoutes)
  // Last: the stream's preClose hook has ended the event streams by now, so they do not use up the grace.
  app.addHook('preClose', async () => void closeConnections(STOP_GRACE_MS))
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
