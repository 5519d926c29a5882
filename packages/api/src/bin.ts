#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { describeVariables } from '@tornado/shared'
import { ApiEnv } from './config.js'

function usage(): string {
  return [
    'Usage: tornado-api [--help] [--version]',
    '       tornado-api keys create --name NAME | keys list | keys revoke ID   (see tornado-api keys --help)',
    '       tornado-api acl [--client-setinfo]   prints the Redis ACL users (see tornado-api acl --help)',
    '',
    'Serves GET /dashboard/cluster (the job totals over every live worker node, x-api-key required), GET /dashboard/nodes,',
    'the event stream GET /dashboard/cluster/stream, the dashboard page at /, its OpenAPI docs at /swagger, GET /health',
    '(liveness), GET /ready (200 only while Redis answers) and GET /metrics (Prometheus; no key; METRICS_ENABLED=0: off).',
    'Configured by environment variables:',
    ...describeVariables(ApiEnv),
    '',
  ].join('\n')
}

function version(): string {
  // package.json sits one level above both src/ and dist/.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

if (process.argv[2] === 'keys') {
  const { runKeysCommand, KEYS_USAGE } = await import('./keys-cli.js')
  const rest = process.argv.slice(3)
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(KEYS_USAGE)
    process.exit(0)
  }
  process.exit(
    await runKeysCommand(rest, process.env, { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text) }),
  )
}

if (process.argv[2] === 'acl') {
  const { runAclCommand, ACL_USAGE } = await import('./acl-cli.js')
  const rest = process.argv.slice(3)
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(ACL_USAGE)
    process.exit(0)
  }
  process.exit(runAclCommand(rest, process.env, { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text) }))
}

let args
try {
  args = parseArgs({
    options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
    strict: true,
  }).values
} catch (err) {
  process.stderr.write(`tornado-api: ${(err as Error).message}\n\n${usage()}`)
  process.exit(2)
}

if (args.help) {
  process.stdout.write(usage())
} else if (args.version) {
  process.stdout.write(`${version()}\n`)
} else {
  // Loaded only to run: --help and --version answer without loading Fastify.
  const { runServer } = await import('./server.js')
  await runServer(process.env)
}
