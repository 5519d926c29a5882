import { hostname } from 'node:os'
import type { NetworkInterfaceInfo } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { HostInfoSource, isUsableAddress, pickAddress, quickHostInfo, type InterfaceEntry } from '../src/index.js'

const si = (iface: string, ip4: string, internal = false): InterfaceEntry => ({ iface, ip4, internal })
const v4 = (address: string, internal = false): NetworkInterfaceInfo => ({
  address,
  family: 'IPv4',
  internal,
  netmask: '255.255.255.0',
  mac: '02:00:00:00:00:01',
  cidr: `${address}/24`,
})
const v6 = (address: string, internal = false): NetworkInterfaceInfo => ({
  address,
  family: 'IPv6',
  internal,
  netmask: 'ffff:ffff:ffff:ffff::',
  mac: '02:00:00:00:00:01',
  cidr: `${address}/64`,
  scopeid: 0,
})

const loopback = { si: si('lo', '127.0.0.1', true), os: { lo: [v4('127.0.0.1', true), v6('::1', true)] } }
const docker = { si: si('docker0', '172.17.0.1'), os: { docker0: [v4('172.17.0.1')] } }

t.test('the default interface wins, wherever it is in the list', async (t) => {
  t.equal(
    pickAddress({
      defaultIface: 'ens5',
      interfaces: [loopback.si, docker.si, si('veth12ab', '172.17.0.9'), si('ens5', '10.0.3.17')],
      osInterfaces: { ...loopback.os, ...docker.os, ens5: [v4('10.0.3.17')] },
    }),
    '10.0.3.17',
  )
})

t.test('loopback, docker0, veth and br-* are never picked', async (t) => {
  t.equal(
    pickAddress({
      defaultIface: 'docker0',
      interfaces: [loopback.si, docker.si],
      osInterfaces: {
        ...loopback.os,
        ...docker.os,
        veth9f8e: [v4('172.18.0.5')],
        'br-4a1b2c3d': [v4('172.19.0.1')],
      },
    }),
    '',
  )
})

t.test('a link-local default address falls back to the first usable one node:os lists', async (t) => {
  t.equal(
    pickAddress({
      defaultIface: 'eth0',
      interfaces: [loopback.si, si('eth0', '169.254.10.20')],
      osInterfaces: { ...loopback.os, eth0: [v4('169.254.10.20')], wlan0: [v6('fe80::1'), v4('192.168.1.7')] },
    }),
    '192.168.1.7',
  )
  t.equal(
    pickAddress({
      defaultIface: 'eth0',
      interfaces: [si('eth0', '169.254.10.20')],
      osInterfaces: { eth0: [v4('169.254.10.20')] },
    }),
    '',
  )
})

t.test('an IPv6-only host has no IPv4 address to report', async (t) => {
  t.equal(
    pickAddress({
      defaultIface: 'eth0',
      interfaces: [loopback.si, si('eth0', '')],
      osInterfaces: { ...loopback.os, eth0: [v6('2001:db8::10'), v6('fe80::10')] },
    }),
    '',
  )
})

t.test('no default interface known: node:os, skipping internal ones', async (t) => {
  t.equal(
    pickAddress({
      defaultIface: '',
      interfaces: [],
      osInterfaces: { ...loopback.os, ...docker.os, eth1: [v6('2001:db8::2'), v4('10.2.3.4')], eth2: [v4('10.9.9.9')] },
    }),
    '10.2.3.4',
  )
  t.equal(pickAddress({ defaultIface: '', interfaces: [], osInterfaces: {} }), '')
})

t.test('isUsableAddress', async (t) => {
  t.equal(isUsableAddress('eth0', '10.0.0.1', false), true)
  t.equal(isUsableAddress('eth0', '10.0.0.1', true), false)
  t.equal(isUsableAddress('eth0', '127.0.1.1', false), false)
  t.equal(isUsableAddress('eth0', '0.0.0.0', false), false)
  t.equal(isUsableAddress('eth0', '169.254.0.1', false), false)
  t.equal(isUsableAddress('eth0', '169.253.0.1', false), true)
  t.equal(isUsableAddress('eth0', '256.1.1.1', false), false)
  t.equal(isUsableAddress('eth0', 'fe80::1', false), false)
  t.equal(isUsableAddress('eth0', '', false), false)
  t.equal(isUsableAddress('br-abc', '10.0.0.1', false), false)
  t.equal(isUsableAddress('veth0', '10.0.0.1', false), false)
  t.equal(isUsableAddress('docker0', '10.0.0.1', false), false)
})

t.test('start waits for a slow read at most startTimeoutMs, then uses what node:os says', async (t) => {
  let finish: (info: { hostname: string; ip: string }) => void = () => {}
  const source = new HostInfoSource({ read: () => new Promise((resolve) => (finish = resolve)), startTimeoutMs: 100 })
  t.teardown(() => source.stop())
  const started = Date.now()
  await source.start()
  const waited = Date.now() - started
  t.ok(waited >= 90 && waited < 400, `start took ${waited} ms`)
  t.same(source.current, quickHostInfo())
  t.equal(source.current.hostname, hostname())
  finish({ hostname: 'late', ip: '10.0.0.9' })
  await sleep(0)
  t.same(source.current, { hostname: 'late', ip: '10.0.0.9' })
})

t.test('refreshes in the background on its own timer, never two reads at once, and stops', async (t) => {
  let reads = 0
  let concurrent = 0
  let maxConcurrent = 0
  const source = new HostInfoSource({
    read: async () => {
      reads++
      concurrent++
      maxConcurrent = Math.max(maxConcurrent, concurrent)
      await sleep(30)
      concurrent--
      return { hostname: `h${reads}`, ip: '10.0.0.1' }
    },
    refreshEveryMs: 20,
  })
  await source.start()
  t.same(source.current, { hostname: 'h1', ip: '10.0.0.1' })
  await sleep(300)
  source.stop()
  const readsAtStop = reads
  t.ok(reads >= 4 && reads <= 7, `${reads} reads in 300 ms at 50 ms each`)
  t.equal(maxConcurrent, 1)
  await sleep(120)
  t.equal(reads, readsAtStop, 'no read after stop')
})

t.test('a failing refresh keeps the last known values and reports the error', async (t) => {
  const errors: string[] = []
  let calls = 0
  const source = new HostInfoSource({
    read: async () => {
      if (++calls > 1) throw new Error('nmcli not found')
      return { hostname: 'first', ip: '10.0.0.2' }
    },
    refreshEveryMs: 20,
    onError: (err) => errors.push((err as Error).message),
  })
  await source.start()
  await sleep(60)
  source.stop()
  t.same(source.current, { hostname: 'first', ip: '10.0.0.2' })
  t.equal(errors[0], 'nmcli not found')
})
