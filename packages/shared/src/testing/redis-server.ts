import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

/** A free TCP port on loopback, as the kernel hands one out. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/**
 * A private, throwaway redis-server on a free loopback port: tests never touch a Redis they did not start.
 * Nothing is persisted, so `restart()` brings it back empty, as a crashed cache would.
 */
export class RedisServer {
  private child: ChildProcess | undefined
  /**
   * The server's working directory, private to it: a replica's full sync writes dump.rdb there whatever --save says,
   * and a later server started in the same folder would load it and not start empty.
   */
  readonly dir = mkdtempSync(join(tmpdir(), 'tornado-redis-'))
  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
  ) {}

  static async start(extraArgs: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArgs)
    await server.boot()
    return server
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  /** A plain client for assertions and setup; the caller quits it. */
  client(): Redis {
    return new Redis(this.port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 })
  }

  private async boot(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extraArgs]
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir })
    this.child = child
    // If the test process ends without stop() (a failed test, tap's timeout), the server must not outlive it.
    const kill = () => child.kill('SIGKILL')
    process.once('exit', kill)
    process.once('SIGALRM', kill)
    child.once('exit', () => {
      process.off('exit', kill)
      process.off('SIGALRM', kill)
    })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(new Error(`cannot start redis-server (${err.message}); install it, e.g. apt-get install redis-server`)),
      )
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output.slice(-500)}`)))
    })
    failed.catch(() => {})
    try {
      await Promise.race([failed, this.waitUntilReady()])
    } catch (err) {
      child.kill('SIGKILL') // never leave a half-started server behind
      throw err
    }
  }

  private async waitUntilReady(): Promise<void> {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const probe = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      probe.on('error', () => {})
      try {
        await probe.connect()
        if ((await probe.ping()) === 'PONG') return
      } catch {
        // not up yet
      } finally {
        probe.disconnect()
      }
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw new Error(`redis-server on port ${this.port} did not answer within 10 s`)
  }

  async stop(): Promise<void> {
    await this.end('SIGTERM')
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Kills the server at once (SIGKILL, as a crash or the OOM killer would); restart() then brings up an empty one. */
  async kill(): Promise<void> {
    await this.end('SIGKILL')
  }

  /** Stops the server (if it still runs) and starts a new, empty one on the same port. */
  async restart(): Promise<void> {
    await this.end('SIGTERM')
    rmSync(this.dir, { recursive: true, force: true })
    mkdirSync(this.dir)
    await this.boot()
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    this.child = undefined
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGCONT') // in case a test paused it
    child.kill(signal)
    await once(child, 'exit')
  }

  pause(): void {
    this.child?.kill('SIGSTOP')
  }

  resume(): void {
    this.child?.kill('SIGCONT')
  }
}
