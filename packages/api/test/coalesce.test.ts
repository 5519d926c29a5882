import t from 'tap'
import { coalesce } from '../src/coalesce.js'
import { get, heartbeat, KEY_A, startTestApi, totals } from './helper.js'

t.test('coalesce: single flight, reuse within the window, failures never reused', async (t) => {
  let clock = 0
  let calls = 0
  let fail = false
  const read = coalesce(
    async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 10))
      if (fail) throw new Error('down')
      return calls
    },
    250,
    () => clock,
  )
  t.same(await Promise.all([read(), read(), read()]), [1, 1, 1], 'concurrent callers share one read')
  clock = 249
  t.equal(await read(), 1, 'reused inside the window')
  clock = 250
  t.equal(await read(), 2, 'read again once the window has passed')
  clock = 600
  fail = true
  const failures = await Promise.allSettled([read(), read()])
  t.same(failures.map((r) => r.status), ['rejected', 'rejected'])
  t.equal(calls, 3, 'the callers waiting on a failed read shared it')
  fail = false
  t.equal(await read(), 4, 'a failure is not reused')
  t.equal(calls, 4)

  let direct = 0
  const noReuse = coalesce(async () => {
    await new Promise((resolve) => setTimeout(resolve, 10))
    return ++direct
  }, 0)
  t.same(await Promise.all([noReuse(), noReuse()]), [1, 1], 'with 0, concurrent callers still share a read')
  t.equal(await noReuse(), 2, 'with 0, a finished read is never reused')
})

t.test('many dashboards polling at once cost Redis one read', async (t) => {
  const api = await startTestApi(t, { TOTALS_CACHE_MS: '250' })
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 2, uploading: 1 }))
  await api.raw.config('RESETSTAT')
  const responses = await Promise.all(
    Array.from({ length: 50 }, () => get(`${api.url}/dashboard/cluster`, { 'x-api-key': KEY_A })),
  )
  t.same(new Set(responses.map((r) => `${r.status} ${r.text}`)), new Set([`200 ${JSON.stringify(totals(4, 2, 1))}`]))
  const stats = await api.raw.info('commandstats')
  const calls = Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? /cmdstat_eval:calls=(\d+)/.exec(stats)?.[1])
  t.ok(calls >= 1 && calls <= 2, `50 concurrent requests made ${calls} Redis read(s)`)

  // A change shows once the window has passed.
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 0, muxing: 0, uploading: 0 }))
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': KEY_A })).body, totals(0, 0, 0))
})
