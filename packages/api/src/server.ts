import { ConfigError, type Env } from '@tornado/shared'
import { buildApp, STOP_GRACE_MS, type App } from './app.js'
import { describeConfig, loadApiConfig } from './config.js'

/**
 * How long a graceful stop may take before the process exits 1 anyway: a backstop. Closing ends every connection
 * after STOP_GRACE_MS and quitting Redis is bounded, so a stop takes at most about STOP_GRACE_MS plus a second.
 */
const STOP_DEADLINE_MS = STOP_GRACE_MS + 3_500

/**
 * Runs the API as a process: reads the configuration, builds the app, listens, and stops cleanly on SIGTERM/SIGINT
 * (a second signal exits at once). Exits 1 with a one-line message when the configuration is bad.
 */
export async function runServer(env: Env): Promise<void> {
  let config
  try {
    config = loadApiConfig(env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`tornado-api: ${err.message}\nRun tornado-api --help for every variable and its default.\n`)
    process.exit(1)
  }

  let app: App | undefined
  let stopSignal: NodeJS.Signals | undefined
  const stop = (signal: NodeJS.Signals) => {
    if (stopSignal) {
      app?.log.warn({ signal }, 'second signal: exiting without waiting')
      process.exit(1)
    }
    stopSignal = signal
    // Start-up still running: it checks stopSignal when done.
    if (app) void closeAndExit(app, signal)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  app = await buildApp({ config })
  app.log.info({ config: describeConfig(config) }, 'tornado-api starting')
  if (stopSignal) return closeAndExit(app, stopSignal)
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    // Named as the variables that chose the address: EADDRINUSE or ENOTFOUND alone leaves the operator guessing.
    const message = `cannot listen on ${config.host}:${config.port} (HOST, PORT): ${(err as Error).message}`
    app.log.fatal({ reason: (err as Error).message, host: config.host, port: config.port }, message)
    await app.close()
    process.stderr.write(`tornado-api: ${message}\n`)
    process.exit(1)
  }
}

async function closeAndExit(app: App, signal: NodeJS.Signals): Promise<never> {
  app.log.info({ signal }, 'stopping: no new connections, finishing requests, closing Redis')
  const deadline = setTimeout(() => {
    app.log.error({ deadlineMs: STOP_DEADLINE_MS }, 'graceful stop took too long: exiting')
    process.exit(1)
  }, STOP_DEADLINE_MS)
  deadline.unref()
  try {
    await app.close()
  } catch (err) {
    app.log.error({ reason: (err as Error).message }, 'error while stopping')
    process.exit(1)
  }
  app.log.info('stopped')
  process.exit(0)
}
