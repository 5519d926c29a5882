// One HTTP server for the benchmark, in its own process so autocannon never shares its event loop.
// node bench/http-server.mjs <ceiling|app|naive> <port> <redisUrl> <apiKey>
// All three are the real API (buildApp: same plugins, same auth hook) and differ only in the route measured:
//   ceiling: a route returning a constant body: the most HTTP can do here
//   app:     our GET /dashboard/cluster, with no reuse of results (TOTALS_CACHE_MS=0)
//   naive:   the usual per-request read of every node's record (the node set, then a pipelined read of each record:
//            GET, since a record is one string; HGETALL where it is a hash), summed in Node
import { buildApp, loadApiConfig } from '@tornado/api'
import { ClusterTotals, ErrorBody, createRedisClient, parseRecord, shardKeys, waitForReady } from '@tornado/shared'
import { BENCH_STALE_AFTER_MS, PREFIX } from './lib.mjs'

const BENCH_PATH = '/bench/cluster'
const [mode, port, redisUrl, apiKey] = process.argv.slice(2)
const config = loadApiConfig({
  REDIS_URL: redisUrl,
  TORNADO_PREFIX: PREFIX,
  TORNADO_API_KEYS: apiKey,
  TOTALS_CACHE_MS: '0',
  STALE_AFTER_MS: String(BENCH_STALE_AFTER_MS),
  LOG_LEVEL: 'warn',
})
const app = await buildApp({ config })
const schema = { response: { 200: ClusterTotals, 401: ErrorBody } }

if (mode === 'ceiling') {
  const body = { total_downloading: 45, total_muxing: 12, total_uploading: 8 }
  app.get(BENCH_PATH, { onRequest: app.verifyApiKey, schema }, async () => body)
} else if (mode === 'naive') {
  const redis = createRedisClient(redisUrl, { commandTimeout: 60_000 })
  await waitForReady(redis, 5000)
  const keys = shardKeys({ prefix: PREFIX, shards: 1 }, 0)
  app.get(BENCH_PATH, { onRequest: app.verifyApiKey, schema }, async () => {
    const [seconds] = await redis.time()
    const ids = await redis.zrangebyscore(keys.nodes, Number(seconds) * 1000 - config.staleAfterMs, '+inf')
    const pipeline = redis.pipeline()
    for (const id of ids) pipeline.get(keys.nodePrefix + id)
    const totals = { total_downloading: 0, total_muxing: 0, total_uploading: 0 }
    const replies = (await pipeline.exec()) ?? []
    replies.forEach(([err, text], i) => {
      const record = err || typeof text !== 'string' ? undefined : parseRecord(ids[i], text)
      if (!record) return
      totals.total_downloading += record.counts.downloading
      totals.total_muxing += record.counts.muxing
      totals.total_uploading += record.counts.uploading
    })
    return totals
  })
} else if (mode !== 'app') {
  throw new Error(`unknown mode ${mode}`)
}
await app.listen({ port: Number(port), host: '127.0.0.1' })
process.send?.('listening')
process.on('SIGTERM', () => app.close().then(() => process.exit(0)))
