#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { parseArgs } from 'node:util'
import { ConfigError, describeVariables } from '@tornado/shared'
import type { Agent } from './agent.js'
import { AgentEnv, loadConfig } from './config.js'

const HELP = `Usage: tornado-agent [options]

Writes this worker node's heartbeat (what it is downloading, muxing and uploading) to Redis every
HEARTBEAT_INTERVAL_MS, and takes the node's counts on a local HTTP interface:
  PUT /counts {"downloading":3,"muxing":1,"uploading":0}   GET /counts   GET /health
  PUT /workers/<id>/counts {...,"ttl_ms":10000}   DELETE /workers/<id>   GET /workers   GET /processes
  GET /metrics (Prometheus). With AGENT_TOKEN set, every route but GET /health needs
  the header "Authorization: Bearer <AGENT_TOKEN>".

Options:
  --simulate             simulate a workload instead of taking PUT /counts (same as TORNADO_SIMULATE=1)
  --watch-processes      also count running processes by executable name: ffmpeg is muxing, curl downloading,
                         rclone uploading and so on (same as TORNADO_WATCH_PROCESSES=1)
  -h, --help             show this help
  -v, --version          print the version

Environment variables:
${describeVariables(AgentEnv).join('\n')}

SIGTERM or SIGINT stops the agent and removes the node from the totals at once; a second signal exits at once.
`

function version(): string {
  // src/bin.ts and dist/bin.js both sit one level below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function fail(message: string): never {
  process.stderr.write(`tornado-agent: ${message}\n`)
  process.exit(1)
}

async function main(): Promise<void> {
  let flags: { simulate?: boolean; 'watch-processes'?: boolean; help?: boolean; version?: boolean }
  try {
    flags = parseArgs({
      options: {
        simulate: { type: 'boolean' },
        'watch-processes': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    fail(`${(err as Error).message}; see --help`)
  }
  if (flags.help) return void process.stdout.write(HELP)
  if (flags.version) return void process.stdout.write(`${version()}\n`)

  let config
  try {
    config = loadConfig(process.env, { hostname: hostname(), simulate: flags.simulate, watchProcesses: flags['watch-processes'] })
  } catch (err) {
    // The same two lines as tornado-api's: the variable and why, then where every variable is described.
    if (err instanceof ConfigError) fail(`${err.message}\nRun tornado-agent --help for every variable and its default.`)
    throw err
  }

  // Loaded only now, so --help, --version and a bad variable answer without loading the HTTP and Redis stack.
  const { createLogger, startAgent } = await import('./agent.js')
  const logger = createLogger(config.logLevel)
  // Handlers first: a signal during start-up (up to ~2 s waiting for Redis) stops the agent once it is up.
  let agent: Agent | undefined
  let signals = 0
  const stopAndExit = () => void agent!.stop().then(() => process.exit(0))
  const onSignal = (signal: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      logger.warn({ event: 'forced_exit', signal }, 'second signal: exiting without finishing shutdown')
      process.exit(1)
    }
    logger.info({ event: 'signal', signal }, `received ${signal}`)
    if (agent) stopAndExit()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  try {
    agent = await startAgent(config, { logger })
  } catch (err) {
    logger.fatal({ event: 'start_failed', err: (err as Error).message }, 'agent could not start')
    process.exit(1)
  }
  if (signals > 0) stopAndExit()
}

void main()
