import { hostname as osHostname, networkInterfaces as osNetworkInterfaces, type NetworkInterfaceInfo } from 'node:os'
import si from 'systeminformation'

export interface HostInfo {
  hostname: string
  ip: string
}

/** The fields of systeminformation's interface entries that the choice looks at. */
export interface InterfaceEntry {
  iface: string
  ip4: string
  internal: boolean
}

export interface AddressSources {
  /** si.networkInterfaceDefault(): the interface of the default route, '' when unknown. */
  defaultIface: string
  /** si.networkInterfaces(). */
  interfaces: InterfaceEntry[]
  /** node:os networkInterfaces(), the fallback. */
  osInterfaces: NodeJS.Dict<NetworkInterfaceInfo[]>
}

const VIRTUAL_IFACE = /^(lo|docker\d*|veth|br-|virbr|cni|flannel|cali|vxlan)/
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/** An address other nodes (and operators) could reach this node by: not loopback, link-local or a bridge's. */
export function isUsableAddress(iface: string, address: string, internal: boolean): boolean {
  const octets = IPV4.exec(address)
  if (!octets || internal || VIRTUAL_IFACE.test(iface)) return false
  const [a, b] = [Number(octets[1]), Number(octets[2])]
  if (a === 127 || a === 0 || (a === 169 && b === 254)) return false
  return octets.slice(1).every((part) => Number(part) <= 255)
}

/** The default interface's IPv4 address; else the first usable IPv4 address node:os lists; else ''. */
export function pickAddress({ defaultIface, interfaces, osInterfaces }: AddressSources): string {
  const preferred = interfaces.find((entry) => entry.iface === defaultIface)
  if (preferred && isUsableAddress(preferred.iface, preferred.ip4, preferred.internal)) return preferred.ip4
  for (const [name, addresses] of Object.entries(osInterfaces)) {
    for (const entry of addresses ?? []) {
      if (entry.family === 'IPv4' && isUsableAddress(name, entry.address, entry.internal)) return entry.address
    }
  }
  return ''
}

/** What the agent knows without asking systeminformation: sub-millisecond, used until the full read is in. */
export function quickHostInfo(): HostInfo {
  return {
    hostname: osHostname(),
    ip: pickAddress({ defaultIface: '', interfaces: [], osInterfaces: osNetworkInterfaces() }),
  }
}

/** The full read. Costs up to ~100 ms of blocked event loop (si shells out), so it never runs on a beat. */
export async function readHostInfo(): Promise<HostInfo> {
  const [defaultIface, interfaces] = await Promise.all([si.networkInterfaceDefault(), si.networkInterfaces()])
  let hostname = osHostname()
  if (hostname === '') {
    const os = await si.osInfo()
    hostname = os.fqdn || os.hostname
  }
  return {
    hostname,
    ip: pickAddress({ defaultIface, interfaces: Array.isArray(interfaces) ? interfaces : [interfaces], osInterfaces: osNetworkInterfaces() }),
  }
}

export interface HostInfoSourceOptions {
  read?: () => Promise<HostInfo>
  /** How long start() waits for the first read before going on with quickHostInfo(). */
  startTimeoutMs?: number
  refreshEveryMs?: number
  onError?: (err: unknown) => void
}

/**
 * Holds the last known hostname and IP. Reads them at start (bounded wait) and then refreshes them in the
 * background on its own timer; beats only ever read `current`.
 */
export class HostInfoSource {
  current: HostInfo
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly read: () => Promise<HostInfo>
  private readonly startTimeoutMs: number
  private readonly refreshEveryMs: number
  private readonly onError: (err: unknown) => void

  constructor(options: HostInfoSourceOptions = {}) {
    this.read = options.read ?? readHostInfo
    this.startTimeoutMs = options.startTimeoutMs ?? 2000
    this.refreshEveryMs = options.refreshEveryMs ?? 60_000
    this.onError = options.onError ?? (() => {})
    this.current = quickHostInfo()
  }

  async start(): Promise<void> {
    const first = this.refresh()
    let timeout: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => (timeout = setTimeout(resolve, this.startTimeoutMs)))
    await Promise.race([first, waited])
    clearTimeout(timeout)
    // The next refresh is scheduled when this one is done, so reads never overlap.
    void first.then(() => this.schedule())
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => void this.refresh().then(() => this.schedule()), this.refreshEveryMs)
    this.timer.unref()
  }

  private async refresh(): Promise<void> {
    try {
      const info = await this.read()
      if (!this.stopped) this.current = info
    } catch (err) {
      this.onError(err)
    }
  }
}
