import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Ajv } from 'ajv'
import { parse } from 'yaml'

/*
 * `docker compose config` needs the compose plugin, which Debian does not package; Debian's docker-compose 1.29
 * rejects the current format (a top-level `name:`). So docker-compose.yml is checked against the Compose
 * Specification's JSON schema instead: the copy the dclint package ships (schemas/compose.schema.json, kept in step
 * with the compose-spec project), through ajv, after YAML anchors and `<<` merge keys are resolved as Compose does.
 */

const root = fileURLToPath(new URL('../../', import.meta.url))
const schemaPath = join(dirname(createRequire(import.meta.url).resolve('dclint/package.json')), 'schemas/compose.schema.json')
const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as Record<string, unknown>
// A draft-07 schema, named by its https address, which ajv (draft-07 by default) knows only under http.
const { $schema: draft, ...schemaBody } = schema
// Compose's own extra formats (durations, ports) are not standard; the structure is what this checks.
const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(schemaBody)

interface Service {
  build?: { context: string; dockerfile: string }
  image?: string
  environment?: Record<string, string>
  stop_grace_period?: string
  init?: boolean
  command?: string[]
}
interface ComposeFile {
  name?: string
  services: Record<string, Service>
}

const text = readFileSync(join(root, 'docker-compose.yml'), 'utf8')
const compose = parse(text, { merge: true }) as ComposeFile

t.test('docker-compose.yml is valid against the Compose Specification schema', async (t) => {
  t.equal(schema.title, 'Compose Specification')
  t.equal(draft, 'https://json-schema.org/draft-07/schema')
  const valid = validate(compose)
  t.same(validate.errors ?? [], [], 'no schema errors')
  t.equal(valid, true)
})

t.test('the schema check is live: a misspelt key or a wrong type is rejected', async (t) => {
  const misspelt = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> }
  misspelt.services.api!.stop_grace_perod = '10s'
  t.equal(validate(misspelt), false)
  t.match(validate.errors, [{ keyword: 'additionalProperties', params: { additionalProperty: 'stop_grace_perod' } }])

  const wrongType = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> }
  wrongType.services.redis!.healthcheck = 'redis-cli ping'
  t.equal(validate(wrongType), false)
})

t.test('redis, the API and three agents, each agent its own node id, stopped gracefully', async (t) => {
  t.equal(compose.name, 'tornado')
  t.same(Object.keys(compose.services).sort(), ['agent-1', 'agent-2', 'agent-3', 'api', 'redis'])
  const agents = ['agent-1', 'agent-2', 'agent-3'].map((name) => compose.services[name]!)
  t.same(
    agents.map((agent) => agent.environment?.TORNADO_NODE_ID),
    ['node-1', 'node-2', 'node-3'],
  )
  for (const [name, service] of Object.entries(compose.services)) {
    if (name === 'redis') continue
    // The agent takes its node out of the totals on SIGTERM; Compose's default 10 s is stated, not assumed.
    t.equal(service.stop_grace_period, '10s', `${name}: stop_grace_period`)
    t.equal(service.init, true, `${name}: an init process reaps what the shell-outs leave and forwards signals`)
    t.ok(service.build, `${name}: built from the repository`)
    t.doesNotThrow(() => readFileSync(join(root, service.build!.context, service.build!.dockerfile)), `${name}: its Dockerfile exists`)
  }
  t.same(agents.map((agent) => agent.command), [['--simulate'], ['--simulate'], ['--simulate']])
})

t.test('the API image ships the dashboard page; both run node directly as the unprivileged user', async (t) => {
  const api = readFileSync(join(root, 'packages/api/Dockerfile'), 'utf8')
  t.match(api, /\nCOPY packages\/api\/public packages\/api\/public\n/)
  for (const [name, dockerfile] of [['api', api], ['agent', readFileSync(join(root, 'packages/agent/Dockerfile'), 'utf8')]] as const) {
    t.match(dockerfile, new RegExp(`\\nENTRYPOINT \\["node", "packages/${name}/dist/bin\\.js"\\]\\n`), `${name}: exec-form ENTRYPOINT, node gets SIGTERM`)
    t.match(dockerfile, /\nUSER node\n/, `${name}: not root`)
    t.match(dockerfile, /\nHEALTHCHECK /, `${name}: healthcheck`)
  }
})
