// Process watching without real processes: the rules file (TORNADO_PROCESS_RULES) and the scan over a fake /proc.
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError } from '@tornado/shared'
import { setTimeout as sleep } from 'node:timers/promises'
import type { JobCounts } from '@tornado/shared'
import { DEFAULT_PROCESS_RULES, ProcessMatcher, ProcessTable, ProcessWatcher, RECHECK_EVERY, loadConfig } from '../src/index.js'

const load = (env: Record<string, string>) => loadConfig(env, { hostname: 'node-1' })

function configError(env: Record<string, string>): string {
  try {
    load(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('a good rules file replaces the defaults', async (t) => {
  const dir = t.testdir({
    'rules.json': JSON.stringify({ muxing: ['ffmpeg', 'HandBrakeCLI'], downloading: ['yt-dlp'], uploading: [] }),
    'only-muxing.json': '{"muxing":["ffmpeg"]}\n',
  })
  const path = join(dir, 'rules.json')
  const config = load({ TORNADO_WATCH_PROCESSES: '1', TORNADO_PROCESS_RULES: path })
  t.same(
    { watch: config.watchProcesses, rules: config.processRules, file: config.processRulesFile },
    { watch: true, rules: { muxing: ['ffmpeg', 'HandBrakeCLI'], downloading: ['yt-dlp'], uploading: [] }, file: path },
  )
  t.same(load({ TORNADO_PROCESS_RULES: join(dir, 'only-muxing.json') }).processRules, { muxing: ['ffmpeg'] }, 'a stage may be left out')
  t.same(load({ TORNADO_WATCH_PROCESSES: '1' }).processRules, DEFAULT_PROCESS_RULES)
  t.same(DEFAULT_PROCESS_RULES, {
    downloading: ['yt-dlp', 'youtube-dl', 'curl', 'wget', 'aria2c'],
    muxing: ['ffmpeg'],
    uploading: ['aws', 'rclone', 's5cmd', 's3cmd'],
  })
})

t.test('a bad rules file stops start-up, naming the variable, the file and what is wrong', async (t) => {
  const files: Record<string, string> = {
    'array.json': '["ffmpeg"]',
    'null.json': 'null',
    'unknown-stage.json': '{"muxing":["ffmpeg"],"encoding":["x264"]}',
    'not-a-list.json': '{"muxing":"ffmpeg"}',
    'path.json': '{"muxing":["/usr/bin/ffmpeg"]}',
    'number.json': '{"downloading":["curl",7]}',
    'empty-name.json': '{"uploading":[""]}',
    'control.json': '{"muxing":["ff\\nmpeg"]}',
    'twice.json': '{"muxing":["ffmpeg"],"uploading":["rclone","ffmpeg"]}',
    'nothing.json': '{}',
    'empty-lists.json': '{"muxing":[],"downloading":[]}',
    'too-many.json': JSON.stringify({ downloading: Array.from({ length: 257 }, (_, i) => `tool-${i}`) }),
    'broken.json': '{"muxing":["ffmpeg"]',
    'folder.json': {} as unknown as string,
  }
  const dir = t.testdir(files)
  const expected: Record<string, string> = {
    'array.json': 'expected a JSON object like {"muxing":["ffmpeg"],"downloading":["curl"],"uploading":["rclone"]}',
    'null.json': 'expected a JSON object like {"muxing":["ffmpeg"],"downloading":["curl"],"uploading":["rclone"]}',
    'unknown-stage.json': '"encoding" is not a stage; the stages are downloading, muxing, uploading',
    'not-a-list.json': 'muxing must be a list of executable names, e.g. ["ffmpeg"]',
    'path.json': 'muxing[0] ("/usr/bin/ffmpeg") must be an executable name: 1 to 255 characters, no / and no control characters',
    'number.json': 'downloading[1] (7) must be an executable name: 1 to 255 characters, no / and no control characters',
    'empty-name.json': 'uploading[0] ("") must be an executable name: 1 to 255 characters, no / and no control characters',
    'control.json': 'muxing[0] ("ff\\nmpeg") must be an executable name: 1 to 255 characters, no / and no control characters',
    'twice.json': '"ffmpeg" is listed under both muxing and uploading; a process counts in one stage',
    'nothing.json': 'it lists no executable names; expected a JSON object like {"muxing":["ffmpeg"],"downloading":["curl"],"uploading":["rclone"]}',
    'empty-lists.json': 'it lists no executable names; expected a JSON object like {"muxing":["ffmpeg"],"downloading":["curl"],"uploading":["rclone"]}',
    'too-many.json': 'downloading lists more than 256 names',
    'folder.json': 'cannot read it (EISDIR)',
  }
  for (const [name, problem] of Object.entries(expected)) {
    const path = join(dir, name)
    t.equal(configError({ TORNADO_WATCH_PROCESSES: '1', TORNADO_PROCESS_RULES: path }), `TORNADO_PROCESS_RULES=${JSON.stringify(path)} is invalid: ${problem}`, name)
  }
  const broken = join(dir, 'broken.json')
  // JSON.parse's own words differ between Node versions; the part before them is ours.
  t.match(configError({ TORNADO_PROCESS_RULES: broken }), new RegExp(`^TORNADO_PROCESS_RULES=${JSON.stringify(broken).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is invalid: not valid JSON \\(.+\\)$`))
  const missing = join(dir, 'missing.json')
  t.equal(configError({ TORNADO_PROCESS_RULES: missing }), `TORNADO_PROCESS_RULES=${JSON.stringify(missing)} is invalid: cannot read it (ENOENT)`, 'checked even with watching off')
})

/** A fake procfs: one folder per pid with stat, cmdline and exe as the kernel shows them. */
function fakeProc(root: string) {
  const add = (pid: number, comm: string, options: { state?: string; argv?: string[]; exe?: string } = {}) => {
    const dir = join(root, String(pid))
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'stat'), `${pid} (${comm}) ${options.state ?? 'S'} 1 ${pid} ${pid} 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 5000 0 0\n`)
    writeFileSync(join(dir, 'cmdline'), options.argv ? options.argv.join('\0') + '\0' : '')
    if (options.exe) symlinkSync(options.exe, join(dir, 'exe'))
  }
  const remove = (pid: number) => rmSync(join(root, String(pid)), { recursive: true })
  return { add, remove }
}

const counts = (downloading: number, muxing: number, uploading: number) => ({ downloading, muxing, uploading })
const noYield = async () => {}

t.test('names, states, cut names and scripts', async (t) => {
  const root = t.testdir({ self: {}, 'thread-self': {}, sys: {}, uptime: '1 1\n' })
  const proc = fakeProc(root)
  proc.add(1, 'systemd', { argv: ['/sbin/init'] })
  proc.add(2, 'kthreadd')
  proc.add(100, 'ffmpeg', { argv: ['ffmpeg', '-i', 'in.mkv', 'out.mp4'] })
  proc.add(101, 'ffmpeg', { state: 'R' })
  proc.add(102, 'ffmpeg', { state: 'Z' }) // exited, not yet reaped: not running
  proc.add(103, 'curl')
  proc.add(104, 'rclone', { state: 'D' })
  proc.add(105, 'aws')
  proc.add(106, 'ffmpeg (x)') // comm holds a space and parentheses: not ffmpeg
  proc.add(107, 'python3', { argv: ['/usr/bin/python3', '-u', '/usr/local/bin/yt-dlp', 'https://example.com/v'] })
  proc.add(108, 'python3', { argv: ['python3', '-m', 'http.server'] })
  proc.add(109, 'node', { argv: ['node', 'worker.js'] })
  const table = new ProcessTable(new ProcessMatcher(DEFAULT_PROCESS_RULES), { procRoot: root, yieldToLoop: noYield })
  t.same(await table.scan(), counts(2, 2, 2))
  t.equal(table.lastReads, 12, 'every process read on the first scan')

  await t.test('a name longer than 15 characters, cut in comm, is found in argv[0] or else exe', async (t) => {
    const rules = { muxing: ['tornado-test-ffmpeg'], uploading: ['short-upload'] }
    const tree = t.testdir()
    const fake = fakeProc(tree)
    fake.add(10, 'tornado-test-ff', { argv: ['/opt/tools/tornado-test-ffmpeg', '-i', 'x'] })
    fake.add(11, 'tornado-test-ff', { argv: ['renamed-by-parent'], exe: '/opt/tools/tornado-test-ffmpeg' })
    fake.add(12, 'tornado-test-ff', { argv: ['renamed'], exe: '/opt/tools/tornado-test-ffmpeg (deleted)' })
    fake.add(13, 'tornado-test-ff', { argv: ['tornado-test-ffprobe'], exe: '/opt/tools/tornado-test-ffprobe' })
    fake.add(14, 'short-upload')
    const table = new ProcessTable(new ProcessMatcher(rules), { procRoot: tree, yieldToLoop: noYield })
    t.same(await table.scan(), counts(0, 3, 1), 'by argv[0], by exe, by exe of a replaced binary; a different long name is not it')
  })
})

t.test('processes come, go, and change name by exec', async (t) => {
  const root = t.testdir()
  const proc = fakeProc(root)
  const OLD = 64 // unmatched processes that have been there all along
  for (let pid = 1000; pid < 1000 + OLD; pid++) proc.add(pid, 'sshd')
  const table = new ProcessTable(new ProcessMatcher(DEFAULT_PROCESS_RULES), { procRoot: root, yieldToLoop: noYield })
  t.same(await table.scan(), counts(0, 0, 0))
  t.same(await table.scan(), counts(0, 0, 0))
  t.equal(table.lastReads, OLD, 'young processes are read on each of their first two scans')

  await table.scan()
  t.equal(table.lastReads, OLD / RECHECK_EVERY, `then one scan in ${RECHECK_EVERY} reads each`)

  proc.add(50, 'ffmpeg')
  proc.add(51, 'node') // about to exec ffmpeg: a fork caught before its exec
  t.same(await table.scan(), counts(0, 1, 0), 'a new process counts on the next scan')
  proc.remove(51)
  proc.add(51, 'ffmpeg')
  t.same(await table.scan(), counts(0, 2, 0), 'an exec soon after the fork counts on the next scan')

  proc.remove(50)
  t.same(await table.scan(), counts(0, 1, 0), 'an ended process leaves on the next scan')
  proc.remove(51)
  proc.add(51, 'ffmpeg', { state: 'Z' })
  t.same(await table.scan(), counts(0, 0, 0), 'a counted process that turned zombie leaves on the next scan')

  // A long-lived process that execs ffmpeg later (a wrapper script ending in `exec ffmpeg`).
  proc.remove(1003)
  proc.add(1003, 'ffmpeg')
  const scansUntilSeen: number[] = []
  for (let scan = 1; scan <= RECHECK_EVERY; scan++) {
    if ((await table.scan()).muxing === 1) scansUntilSeen.push(scan)
  }
  t.ok(scansUntilSeen.length > 0 && scansUntilSeen[0]! <= RECHECK_EVERY, `seen after ${scansUntilSeen[0]} scans`)
  t.same(scansUntilSeen, Array.from({ length: RECHECK_EVERY - scansUntilSeen[0]! + 1 }, (_, i) => scansUntilSeen[0]! + i), 'and from then on')
})

t.test('reads go in batches with the event loop free between them', async (t) => {
  const root = t.testdir()
  const proc = fakeProc(root)
  for (let pid = 1; pid <= 10; pid++) proc.add(pid, 'bash')
  let yields = 0
  const table = new ProcessTable(new ProcessMatcher(DEFAULT_PROCESS_RULES), {
    procRoot: root,
    readsPerBatch: 3,
    yieldToLoop: async () => void yields++,
  })
  await table.scan()
  t.equal(yields, 3, '10 reads in batches of 3: three pauses')
})

t.test('the watcher: a change is announced, an unreadable process table is reported once per run of failures', async (t) => {
  const outcomes: (JobCounts | Error)[] = [counts(0, 1, 0), counts(0, 1, 0), new Error('EACCES'), new Error('EACCES'), counts(0, 2, 0)]
  const changes: JobCounts[] = []
  const errors: unknown[] = []
  const watcher = new ProcessWatcher({
    scan: async () => {
      const next = outcomes.shift() ?? counts(0, 2, 0)
      if (next instanceof Error) throw next
      return next
    },
    intervalMs: 10,
    onChange: (watched) => changes.push(watched),
    onError: (err) => errors.push(err),
  })
  await watcher.start()
  t.same(watcher.current, counts(0, 1, 0), 'the first scan is in before start() resolves')
  await sleep(200)
  await watcher.stop()
  t.same(changes, [counts(0, 1, 0), counts(0, 2, 0)], 'announced on change only; failed scans keep the last counts')
  t.same(errors.map((err) => (err as Error).message), ['EACCES'], 'one report for two failures in a row')
  const scans = watcher.scans
  await sleep(50)
  t.equal(watcher.scans, scans, 'no scan after stop()')
})
