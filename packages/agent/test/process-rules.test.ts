import { join } from 'node:path'
import t from 'tap'
import { ConfigError } from '@tornado/shared'
import { DEFAULT_PROCESS_RULES, loadConfig } from '../src/index.js'

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
