// Renders the benchmark's results as BENCHMARKS.md.
import { fmt } from './lib.mjs'

export function renderReport(r) {
  const out = [
    '# Benchmarks',
    '',
    `Measured ${r.date.slice(0, 10)} on ${r.machine}; the benchmark, redis-server and the servers under test share the machine.`,
    `Reproduce with \`${r.command}\` (it builds first, starts its own redis-server on a free port and stops it).`,
    '',
  ]
  if (r.redis) {
    out.push(
      '## Redis time per call',
      '',
      'Server-side time from `INFO commandstats` (usec_per_call of EVALSHA), calls made one after another. The naive',
      'read is the usual sum over every node record, here as a Lua loop, so it is Redis time alone.',
      '',
      '| nodes | totals read (µs) | heartbeat write, counts unchanged (µs) | heartbeat write, all counts changed (µs) | naive full read (µs) | naive / ours | kept totals = recount |',
      '|---:|---:|---:|---:|---:|---:|---|',
      ...r.redis.map(
        (row) =>
          `| ${row.nodes} | ${fmt(row.readUsec, 2)} | ${fmt(row.writeUsec, 2)} | ${fmt(row.writeChangedUsec, 2)} | ${fmt(row.naiveUsec, 0)} | ${fmt(row.naiveUsec / row.readUsec, 0)}× | ${row.exact ? 'yes' : '**no**'} |`,
      ),
      '',
    )
  }
  if (r.http) {
    out.push(
      '## HTTP',
      '',
      'autocannon, 100 connections, each server in its own process and each the real app (buildApp): (a) a route behind',
      'the same auth hook returning a constant body, the ceiling; (b) `GET /dashboard/cluster` with no reuse of results',
      '(`TOTALS_CACHE_MS=0`; requests arriving during a read still share it); (c) the naive per-request read (the live node set, then a pipelined read of',
      'each record (GET: a record is one string), summed in Node).',
      '',
      '| nodes | server | requests/s | p50 (ms) | p99 (ms) | non-2xx |',
      '|---:|---|---:|---:|---:|---:|',
    )
    for (const row of r.http) {
      for (const [name, m] of [['(a) ceiling', row.ceiling], ['(b) ours', row.app], ['(c) naive', row.naive]]) {
        out.push(`| ${row.nodes} | ${name} | ${fmt(m.requestsPerSecond, 0)} | ${m.p50} | ${m.p99} | ${m.non2xx} |`)
      }
      out.push(`| ${row.nodes} | **b/a = ${fmt(row.appOverCeiling, 2)}, b/c ${row.naiveAllTimedOut ? '>' : '='} ${fmt(row.appOverNaive, 1)}** | | | | |`)
    }
    out.push('')
  }
  if (r.writes) {
    const w = r.writes
    out.push(
      '## Write load',
      '',
      `${w.agents} simulated agents beating once a second for ${w.seconds} s into the one Redis, spread over the`,
      'second in 10 ms slots, every beat through the exported `HeartbeatStore.writeHeartbeat`.',
      '',
      '| agents | beats/s achieved | failed | beat latency p50 / p99 (ms) | most in flight | drain after last send (ms) | Redis CPU (% of one core) | totals exact |',
      '|---:|---:|---:|---:|---:|---:|---:|---|',
      `| ${w.agents} | ${fmt(w.beatsPerSecond, 0)} | ${w.failed} | ${fmt(w.latencyP50, 2)} / ${fmt(w.latencyP99, 2)} | ${w.maxInFlight} | ${fmt(w.drainMs, 0)} | ${fmt(w.redisCpuOfOneCore * 100, 1)} | ${w.exact ? 'yes' : '**no**'} |`,
      '',
    )
  }
  if (r.agent) {
    const a = r.agent
    out.push(
      '## One agent',
      '',
      `A real \`tornado-agent\` (built) at 1 Hz for ${fmt(a.seconds, 0)} s after a 3 s warm-up; CPU and RSS from /proc;`,
      'the heartbeat period from Redis\'s clock (the time the beat script stamped on the node, polled every 20 ms).',
      '',
      '| RSS (MB) | max RSS (MB) | CPU (% of one core) | beats | period p50 (ms) | period p99 (ms) | min / max (ms) | drift over the run (ms) |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|',
      `| ${fmt(a.rssMb)} | ${fmt(a.maxRssMb)} | ${fmt(a.cpuPercentOfOneCore, 2)} | ${a.beats} | ${a.periodP50} | ${a.periodP99} | ${a.periodMin} / ${a.periodMax} | ${a.driftMs} |`,
      '',
    )
  }
  return out.join('\n')
}
