// Real FFmpeg muxing jobs for `npm run demo -- --real`: each demo node runs its own copy of ffmpeg under its own
// name, so the three agents sharing this machine each count only their node's jobs.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The path of ffmpeg on PATH, or undefined. */
export function findFfmpeg() {
  const found = spawnSync('sh', ['-c', 'command -v ffmpeg'], { encoding: 'utf8' })
  const path = found.status === 0 ? found.stdout.trim() : ''
  return path === '' ? undefined : realpathSync(path)
}

/**
 * A folder with `ffmpeg-<node>` (a symlink to ffmpeg: a process's comm is the name it was started by) and a rules
 * file per node that counts only that name as muxing.
 */
export function prepareNodes(ffmpegPath, nodeIds) {
  const dir = mkdtempSync(join(tmpdir(), 'tornado-demo-'))
  const nodes = nodeIds.map((nodeId) => {
    const name = `ffmpeg-${nodeId.replace(/^demo-/, '')}` // ffmpeg-node-1: within comm's 15 characters
    const binary = join(dir, name)
    symlinkSync(ffmpegPath, binary)
    const rulesFile = join(dir, `${nodeId}.rules.json`)
    writeFileSync(rulesFile, JSON.stringify({ muxing: [name] }))
    return { nodeId, name, binary, rulesFile }
  })
  return { dir, nodes, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Keeps between 0 and 3 jobs running per node, the target wandering every few seconds. A job encodes a generated
 * test picture and tone (-f lavfi) at real-time speed (-re) for 10 to 30 s to H.264/AAC in MP4, a real muxing job
 * at a light load. Jobs are finite, so even a demo killed outright leaves none behind for long.
 */
export function runJobs(node, dir, log) {
  const running = new Set()
  let target = 1
  let stopped = false
  let jobNumber = 0
  const startJob = () => {
    const seconds = 10 + Math.floor(Math.random() * 21)
    const output = join(dir, `${node.nodeId}-job-${++jobNumber}.mp4`)
    const source = [
      '-hide_banner', '-loglevel', 'error', '-nostdin',
      '-re', '-f', 'lavfi', '-i', `testsrc=duration=${seconds}:size=640x360:rate=25`,
      '-re', '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
      '-c:v', 'libx264', '-preset', 'veryfast', '-threads', '1', '-c:a', 'aac', '-f', 'mp4', '-y', output,
    ]
    const child = spawn(node.binary, source, { stdio: ['ignore', 'ignore', 'pipe'] })
    running.add(child)
    let errors = ''
    child.stderr.on('data', (chunk) => (errors += chunk))
    child.on('exit', (code, signal) => {
      running.delete(child)
      rmSync(output, { force: true })
      if (!stopped && code !== 0) log(`${node.name} job ${jobNumber} failed (${signal ?? code}): ${errors.trim().slice(-300)}`)
      fill()
    })
  }
  const fill = () => {
    while (!stopped && running.size < target) startJob()
  }
  const wander = setInterval(() => {
    target = Math.max(0, Math.min(3, target + (Math.random() < 0.5 ? -1 : 1)))
    fill()
  }, 7000)
  fill()
  return {
    /** Stops starting jobs and ends the running ones (SIGTERM: ffmpeg finishes its file and exits). */
    async stop() {
      stopped = true
      clearInterval(wander)
      await Promise.all(
        [...running].map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return
          child.kill('SIGTERM')
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
          await once(child, 'exit')
          clearTimeout(timer)
        }),
      )
    },
    /** Ends every job at once, synchronously: for process exit. */
    killAll() {
      for (const child of running) child.kill('SIGKILL')
    },
  }
}
