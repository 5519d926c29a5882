import t from 'tap'
import type { JobCounts } from '@tornado/shared'
import { MAX_JOBS_ON_NODE, Simulator } from '../src/index.js'
import { ManualTimers } from './fixtures/manual-timers.js'

const counts = (downloading: number, muxing: number, uploading: number): JobCounts => ({ downloading, muxing, uploading })

function simulate(random: () => number, arrivalsPerMinute?: number) {
  const timers = new ManualTimers()
  const changes: JobCounts[] = []
  const simulator = new Simulator({ onChange: (c) => changes.push(c), random, timers, arrivalsPerMinute })
  simulator.start()
  return { timers, changes, simulator }
}

t.test('each node draws its own arrival rate: 0.5x to 1.5x of the mean', async (t) => {
  t.equal(new Simulator({ onChange: () => {}, random: () => 0 }).arrivalsPerMs * 60_000, 2)
  t.equal(new Simulator({ onChange: () => {}, random: () => 0.5 }).arrivalsPerMs * 60_000, 4)
  t.equal(new Simulator({ onChange: () => {}, random: () => 0.75, arrivalsPerMinute: 8 }).arrivalsPerMs * 60_000, 10)
})

t.test('jobs arrive and flow download -> mux -> upload (random fixed at 0.5)', async (t) => {
  // Rate 4/min: arrivals every 15 s * ln 2 = 10.397 s. Download 22.5 s, mux 35 s, upload 11.5 s.
  const { timers, changes, simulator } = simulate(() => 0.5)
  const at = (seconds: number) => {
    timers.advanceTo(seconds * 1000)
    return simulator.current()
  }
  t.same(at(10.3), counts(0, 0, 0))
  t.same(changes, [])
  t.same(at(10.4), counts(1, 0, 0), 'job 1 arrives at 10.397 s')
  t.same(changes, [counts(1, 0, 0)], 'each change reported once')
  t.same(at(20.8), counts(2, 0, 0), 'job 2 at 20.794 s')
  t.same(at(31.2), counts(3, 0, 0), 'job 3 at 31.192 s')
  t.same(at(32.9), counts(2, 1, 0), 'job 1 downloaded at 32.897 s')
  t.same(at(42), counts(3, 1, 0), 'job 4 at 41.589 s')
  t.same(at(43.3), counts(2, 2, 0), 'job 2 downloaded at 43.294 s')
  // Jobs 5 and 6 arrived at 51.986 and 62.383 s; jobs 3 and 4 were downloaded at 53.692 and 64.089 s.
  t.same(at(67.9), counts(2, 3, 1), 'job 1 muxed at 67.897 s: uploading; jobs 2-4 muxing')
  t.equal(changes.length, 11, '6 arrivals, 4 downloads done, 1 mux done')
  t.same(changes.at(-1), counts(2, 3, 1))
  t.same(at(79.4), counts(2, 3, 1), 'job 1 uploaded at 79.397 s; job 2 muxed at 78.294 s, uploading; job 5 took its mux slot')
})

t.test('concurrency per stage is bounded and jobs on the node are capped', async (t) => {
  // 600 per minute: an arrival every 69.3 ms, far more than the node can take.
  const { timers, simulator } = simulate(() => 0.5, 600)
  timers.advanceTo(5000)
  t.same(simulator.current(), counts(4, 0, 0), 'four download slots; the rest wait')
  timers.advanceTo(22_800)
  t.same(simulator.current(), counts(4, 3, 0), 'three mux slots; waiting jobs took the download slots')
  for (let second = 23; second < 600; second++) {
    timers.advanceTo(second * 1000)
    const { downloading, muxing, uploading } = simulator.current()
    if (downloading > 4 || muxing > 3 || uploading > 3) t.fail(`over a stage's slots at ${second} s`)
    if (downloading + muxing + uploading > MAX_JOBS_ON_NODE) t.fail(`over ${MAX_JOBS_ON_NODE} jobs at ${second} s`)
    if (muxing !== 3) t.fail(`mux is the bottleneck and never idles, but muxing=${muxing} at ${second} s`)
  }
  t.same(simulator.current(), counts(3, 3, 0), 'the state at 600 s, same on every run')
  t.ok(timers.pending <= MAX_JOBS_ON_NODE + 1, `${timers.pending} timers pending: bounded`)
})

t.test('varied random numbers: exact counts from a scripted sequence', async (t) => {
  // The simulator draws, in order: the rate, then a gap or a duration each time it schedules something.
  const script = [0.5, 0.1, 0.0, 0.9, 1 - 1e-9, 0.2, 0.5, 0.25]
  let i = 0
  const { timers, simulator } = simulate(() => script[i++] ?? 0.5)
  // rate 4/min. gap -ln(0.9) * 15 s = 1.580 s: job 1 arrives, download 5 s (0.0) -> 6.580 s.
  // next gap -ln(0.1) * 15 s = 34.539 s -> job 2 at 36.119 s.
  // 6.580 s: job 1 mux 10 + 50 * (1 - 1e-9) = 60 s -> 66.580 s.
  // 36.119 s: job 2 download 5 + 35 * 0.2 = 12 s -> 48.119 s; next gap -ln(0.5) * 15 s = 10.397 s -> job 3 at 46.516 s.
  // 46.516 s: job 3 download 5 + 35 * 0.25 = 13.75 s -> 60.266 s; from here every draw is 0.5.
  // 48.119 s: job 2 mux 35 s -> 83.119 s. 66.580 s: job 1 upload 11.5 s -> 78.080 s.
  const at = (seconds: number) => {
    timers.advanceTo(seconds * 1000)
    return simulator.current()
  }
  t.same(at(1.5), counts(0, 0, 0))
  t.same(at(1.6), counts(1, 0, 0))
  t.same(at(6.6), counts(0, 1, 0))
  t.same(at(36.2), counts(1, 1, 0))
  t.same(at(46.6), counts(2, 1, 0))
  t.same(at(48.2), counts(1, 2, 0))
  t.same(at(60.3), counts(1, 3, 0), 'job 3 muxing; job 4 arrived at 56.913 s')
  t.same(at(66.6), counts(1, 2, 1))
  t.same(at(78.1), counts(3, 2, 0), 'jobs 5 and 6 arrived at 67.310 and 77.707 s; job 1 uploaded at 78.080 s')
})

t.test('stop clears every timer; nothing changes afterwards', async (t) => {
  const { timers, changes, simulator } = simulate(() => 0.5)
  timers.advanceTo(45_000)
  const seen = changes.length
  simulator.stop()
  t.equal(timers.pending, 0)
  timers.advanceTo(600_000)
  t.equal(changes.length, seen)
})
