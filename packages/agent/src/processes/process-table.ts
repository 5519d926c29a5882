import { closeSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs'
import { basename } from 'node:path'
import { ZERO_COUNTS, type JobCounts, type Stage } from '@tornado/shared'
import type { ProcessMatcher } from './process-rules.js'

/** Processes read per batch before yielding to the event loop: at 11-13 µs a read, a batch takes about a millisecond. */
export const READS_PER_BATCH = 64
/**
 * A process older than two scans is read again every RECHECK_EVERY scans. Its name can only change by exec, which
 * almost always follows its fork within milliseconds (and young processes are read every scan), so re-reading
 * every process every second would cost about five times more for nothing. See BENCHMARKS.md.
 */
export const RECHECK_EVERY = 8
const YOUNG_SCANS = 2

interface Known {
  /** The stage the process counts in, or undefined when it matches no rule. */
  stage: Stage | undefined
  /** Scans this pid has been seen in, capped at YOUNG_SCANS. */
  seen: number
}

export interface ProcessTableOptions {
  /** Where procfs is mounted; tests point it at a fake tree. */
  procRoot?: string
  readsPerBatch?: number
  /** Lets the event loop run between batches; tests may pass a no-op. */
  yieldToLoop?: () => Promise<void>
}

/**
 * Counts running processes by executable name, reading /proc directly. Each scan lists /proc, reads
 * /proc/<pid>/stat of every new, young, counted or due-for-recheck process (name and state in one read), and reuses
 * the last answer for the rest. Reads are synchronous in small batches: through the thread pool (fs.promises) they
 * cost three to five times more CPU (BENCHMARKS.md), and a batch holds the event loop for about a millisecond.
 */
export class ProcessTable {
  /** Reads done by the last scan, for the benchmark and tests. */
  lastReads = 0
  private readonly known = new Map<number, Known>()
  private scans = 0
  private readonly buffer = Buffer.allocUnsafe(4096)
  private readonly procRoot: string
  private readonly readsPerBatch: number
  private readonly yieldToLoop: () => Promise<void>

  constructor(
    private readonly matcher: ProcessMatcher,
    options: ProcessTableOptions = {},
  ) {
    this.procRoot = options.procRoot ?? '/proc'
    this.readsPerBatch = options.readsPerBatch ?? READS_PER_BATCH
    this.yieldToLoop = options.yieldToLoop ?? (() => new Promise((resolve) => setImmediate(resolve)))
  }

  async scan(): Promise<JobCounts> {
    this.scans++
    const counts: JobCounts = { ...ZERO_COUNTS }
    const listed = new Set<number>()
    let reads = 0
    let batch = 0
    for (const entry of readdirSync(this.procRoot)) {
      const code = entry.charCodeAt(0)
      if (code < 48 || code > 57) continue // not a pid
      const pid = Number(entry)
      listed.add(pid)
      let known = this.known.get(pid)
      if (known === undefined || known.stage !== undefined || known.seen < YOUNG_SCANS || (pid + this.scans) % RECHECK_EVERY === 0) {
        if (batch === this.readsPerBatch) {
          batch = 0
          await this.yieldToLoop()
        }
        batch++
        reads++
        const stage = this.classify(pid)
        if (stage === null) {
          this.known.delete(pid) // gone, or a zombie: not running
          continue
        }
        known = { stage, seen: Math.min(YOUNG_SCANS, (known?.seen ?? 0) + 1) }
        this.known.set(pid, known)
      }
      if (known.stage !== undefined) counts[known.stage]++
    }
    for (const pid of this.known.keys()) if (!listed.has(pid)) this.known.delete(pid)
    this.lastReads = reads
    return counts
  }

  /** The stage a process counts in, undefined when none, null when it is gone or a zombie. */
  private classify(pid: number): Stage | undefined | null {
    const stat = this.read(`${this.procRoot}/${pid}/stat`, 64)
    if (stat === undefined) return null
    // "<pid> (<comm>) <state> ...": comm may itself hold spaces and parentheses, so the last ')' ends it.
    const open = stat.indexOf('(')
    const close = stat.lastIndexOf(')')
    if (open < 0 || close < open) return null
    const state = stat.charAt(close + 2)
    if (state === 'Z' || state === 'X') return null
    const comm = stat.slice(open + 1, close)
    const stage = this.matcher.stage(comm)
    if (stage !== undefined) return stage
    if (this.matcher.mayBeCut(comm)) return this.stageOfCutName(pid)
    if (this.matcher.mayBeScript(comm)) return this.stageOfScript(pid)
    return undefined
  }

  /** comm holds 15 bytes of a longer name: the command line's argv[0] has it (readable for any user), else exe. */
  private stageOfCutName(pid: number): Stage | undefined {
    const argv0 = this.argv(pid)[0]
    const byArgv = argv0 === undefined ? undefined : this.matcher.stage(basename(argv0))
    if (byArgv !== undefined) return byArgv
    try {
      // Needs ptrace access (the same user, or root): fails for other users' processes, which then count by argv0.
      return this.matcher.stage(basename(readlinkSync(`${this.procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, '')))
    } catch {
      return undefined
    }
  }

  /** A script run by an interpreter (python3 /usr/local/bin/yt-dlp ...): its name is the first non-option argument. */
  private stageOfScript(pid: number): Stage | undefined {
    const script = this.argv(pid)
      .slice(1)
      .find((arg) => !arg.startsWith('-'))
    return script === undefined ? undefined : this.matcher.stage(basename(script))
  }

  private argv(pid: number): string[] {
    const text = this.read(`${this.procRoot}/${pid}/cmdline`, this.buffer.length)
    return text === undefined || text === '' ? [] : text.split('\0')
  }

  /** The first `max` bytes of a procfs file, or undefined when the process is gone or the file unreadable. */
  private read(path: string, max: number): string | undefined {
    let fd: number
    try {
      fd = openSync(path, 'r')
    } catch {
      return undefined
    }
    try {
      const length = readSync(fd, this.buffer, 0, max, 0)
      return this.buffer.toString('utf8', 0, length)
    } catch {
      return undefined
    } finally {
      closeSync(fd)
    }
  }
}
