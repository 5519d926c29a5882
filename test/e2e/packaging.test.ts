import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { RedisServer } from '@tornado/shared/testing'
import { until } from './processes.js'

/*
 * What a release ships: `npm pack` of each package, installed together with `npm install -g` into an empty prefix,
 * must give working bins. The three tarballs resolve each other (@tornado/shared ^0.1.0) and the rest comes from the
 * registry (or npm's cache).
 */

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../', import.meta.url))
const PACKAGES = ['shared', 'agent', 'api'] as const
const version = (JSON.parse(readFileSync(join(root, 'packages/api/package.json'), 'utf8')) as { version: string }).version

/** npm and the bins run without the variables npm and tap set for this run, or our own, leaking into them. */
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) => !/^(npm_|NODE_OPTIONS$|TAP|REDIS_URL$|TORNADO_|STALE_AFTER_MS$|PORT$|HOST$|LOG_LEVEL$|METRICS_|AGENT_|HEARTBEAT_)/i.test(name),
  ),
)

const work = mkdtempSync(join(tmpdir(), 'tornado-pack-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const prefix = join(work, 'prefix')
const bin = (name: string) => join(prefix, 'bin', name)

interface PackResult {
  name: string
  filename: string
  files: { path: string }[]
}

let packed: PackResult[] = []

t.before(async () => {
  // CI builds before testing (and prepack would rebuild: skipped here, it costs seconds); a fresh checkout may not have built.
  if (PACKAGES.some((name) => !existsSync(join(root, `packages/${name}/dist/index.js`)))) {
    await run('npx', ['tsc', '-b'], { cwd: root, env: cleanEnv })
  }
  const workspaces = PACKAGES.flatMap((name) => ['-w', `@tornado/${name}`])
  const { stdout } = await run('npm', ['pack', ...workspaces, '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: root,
    env: cleanEnv,
    maxBuffer: 16 << 20,
  })
  packed = JSON.parse(stdout.slice(stdout.indexOf('['))) as PackResult[]
  await run(
    'npm',
    ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...packed.map((p) => join(work, p.filename))],
    { cwd: work, env: cleanEnv },
  )
})

t.test('each tarball holds the built code and what it reads at run time, and no tests', async (t) => {
  t.same(
    packed.map((p) => p.name),
    ['@tornado/shared', '@tornado/agent', '@tornado/api'],
  )
  for (const result of packed) {
    const paths = result.files.map((file) => file.path)
    t.ok(paths.includes('package.json'), `${result.name}: package.json`)
    t.ok(paths.includes('dist/index.js'), `${result.name}: dist/index.js`)
    t.same(
      paths.filter((path) => /(^|\/)test\/|\.test\.|tsbuildinfo/.test(path)),
      [],
      `${result.name}: no tests, no build state`,
    )
  }
  const api = packed.find((p) => p.name === '@tornado/api')!.files.map((file) => file.path)
  for (const path of ['dist/bin.js', 'public/index.html', 'public/app.js', 'public/app.css']) t.ok(api.includes(path), `api: ${path}`)
  t.ok(packed.find((p) => p.name === '@tornado/agent')!.files.some((file) => file.path === 'dist/bin.js'), 'agent: dist/bin.js')
})

t.test('the installed bins answer --version and --help', async (t) => {
  t.equal((await run(bin('tornado-api'), ['--version'], { env: cleanEnv })).stdout, `${version}\n`)
  t.equal((await run(bin('tornado-agent'), ['--version'], { env: cleanEnv })).stdout, `${version}\n`)
  const apiHelp = (await run(bin('tornado-api'), ['--help'], { env: cleanEnv })).stdout
  t.match(apiHelp, /^Usage: tornado-api /)
  for (const line of [/REDIS_URL +default redis:\/\/127\.0\.0\.1:6379\n/, /TORNADO_API_KEYS +\(required\)\n/, /METRICS_ENABLED +default true\n/]) {
    t.match(apiHelp, line)
  }
  const agentHelp = (await run(bin('tornado-agent'), ['--help'], { env: cleanEnv })).stdout
  t.match(agentHelp, /^Usage: tornado-agent /)
  t.match(agentHelp, /HEARTBEAT_INTERVAL_MS .*\(default: 1000\)\n/)
})

t.test('the installed API serves its page, /ready and /metrics, and stops on SIGTERM', async (t) => {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const child = spawn(bin('tornado-api'), [], {
    env: { ...cleanEnv, REDIS_URL: redisServer.url, TORNADO_API_KEYS: 'sk_packaging_test', PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const url = await until('installed tornado-api listening', async () => /"msg":"Server listening at (http:\/\/[^"]+)"/.exec(output)?.[1], 20_000)

  const page = await fetch(`${url}/`)
  t.equal(page.status, 200)
  t.match(await page.text(), /<html/i)
  const ready = await fetch(`${url}/ready`)
  t.equal(ready.status, 200)
  t.equal(await ready.text(), '{"status":"ready"}')
  const metrics = await fetch(`${url}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /\ntornado_api_live_nodes 0\n/)

  child.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0)
})
