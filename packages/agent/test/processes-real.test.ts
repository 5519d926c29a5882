import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { DEFAULT_PROCESS_RULES, ProcessMatcher, ProcessTable } from '../src/index.js'
import { getJson, inspect, onEarlyExit, startRedis, startTestAgent, totals, waitFor, ZERO_TOTALS } from './fixtures/harness.js'

// The two tests use disjoint names (a rules file of unique names, and the defaults), so they may run at once.
t.jobs = 2

const SLEEP = '/bin/sleep'
const RUN_SECONDS = 3
const WITHIN_MS = 2000

/**
 * Starts real processes: copies of /bin/sleep under `name`, so their comm (and argv[0], and exe) is that name.
 * Resolves with the time (performance.now) the last one ended.
 */
function runCopies(t: Test, dir: string, names: string[]) {
  for (const name of new Set(names)) copyFileSync(SLEEP, join(dir, name))
  const children = names.map((name) => {
    const path = join(dir, name)
    const child = spawn(path, [String(RUN_SECONDS)], { stdio: 'ignore' })
    const kill = () => child.kill('SIGKILL')
    t.teardown(kill)
    void once(child, 'exit').then(onEarlyExit(kill))
    return child
  })
  const startedAt = performance.now()
  const ended = Promise.all(children.map((child) => once(child, 'exit'))).then(() => performance.now())
  return { startedAt, ended }
}

t.test('processes under unique names (a rules file): in the totals within 2 s, out within 2 s of ending', async (t) => {
  const dir = t.testdir({
    'rules.json': JSON.stringify({ muxing: ['tornado-test-ffmpeg'], downloading: ['tt-curl'], uploading: ['tt-rclone'] }),
  })
  const server = await startRedis(t)
  const check = inspect(t, server)
  const { agent } = await startTestAgent(t, server.url, { TORNADO_WATCH_PROCESSES: '1', TORNADO_PROCESS_RULES: join(dir, 'rules.json') })
  t.same(await check.totals(), ZERO_TOTALS)

  // tornado-test-ffmpeg is longer than comm's 15 characters: found through the command line.
  const run = runCopies(t, dir, ['tornado-test-ffmpeg', 'tornado-test-ffmpeg', 'tt-curl', 'tt-rclone'])
  const seen = await waitFor(check.totals, totals(1, 2, 1), WITHIN_MS)
  t.same(seen.value, totals(1, 2, 1), `in the totals ${Math.round(performance.now() - run.startedAt)} ms after they started`)
  t.same(await getJson(`${agent.url}/processes`), { status: 200, body: { downloading: 1, muxing: 2, uploading: 1 } })

  const put = await fetch(`${agent.url}/workers/w1/counts`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: '{"downloading":5,"muxing":0,"uploading":0}',
  })
  t.equal(put.status, 204)
  t.same((await waitFor(check.totals, totals(6, 2, 1), 300)).value, totals(6, 2, 1), 'watched counts add to reported ones')
  t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 6, muxing: 2, uploading: 1 } })

  const endedAt = await run.ended
  const gone = await waitFor(check.totals, totals(5, 0, 0), WITHIN_MS + 500)
  const tookMs = Math.round(performance.now() - endedAt)
  t.same(gone.value, totals(5, 0, 0), 'only the reported counts are left')
  t.ok(tookMs <= WITHIN_MS, `out of the totals ${tookMs} ms after the last one ended`)
})

t.test('processes under the default names: the totals move by exactly what was started', async (t) => {
  // Other processes named curl or ffmpeg may run on this machine: expectations are relative to a scan made first.
  const dir = t.testdir()
  const baseline = await new ProcessTable(new ProcessMatcher(DEFAULT_PROCESS_RULES)).scan()
  const server = await startRedis(t)
  const check = inspect(t, server)
  await startTestAgent(t, server.url, { TORNADO_WATCH_PROCESSES: '1' })
  const before = totals(baseline.downloading, baseline.muxing, baseline.uploading)
  t.same(await check.totals(), before, `the baseline: ${JSON.stringify(baseline)}`)

  const run = runCopies(t, dir, ['ffmpeg', 'ffmpeg', 'ffmpeg', 'curl', 'rclone', 'rclone'])
  const during = totals(before.total_downloading + 1, before.total_muxing + 3, before.total_uploading + 2)
  const seen = await waitFor(check.totals, during, WITHIN_MS)
  t.same(seen.value, during, `+1 downloading, +3 muxing, +2 uploading, ${Math.round(performance.now() - run.startedAt)} ms after they started`)

  const endedAt = await run.ended
  const gone = await waitFor(check.totals, before, WITHIN_MS + 500)
  const tookMs = Math.round(performance.now() - endedAt)
  t.same(gone.value, before, 'back to the baseline')
  t.ok(tookMs <= WITHIN_MS, `${tookMs} ms after the last one ended`)
})
