/**
 * Wraps a read so that concurrent callers share one call (single flight) and a result is reused for maxAgeMs,
 * counted from when its read started, so no caller gets data older than maxAgeMs plus one read's latency.
 * A failed read is shared by the callers that waited on it but never reused. maxAgeMs 0: no reuse, but callers
 * arriving while a read is in flight still share it (its answer is no older than their own read's would be).
 */
export function coalesce<T>(read: () => Promise<T>, maxAgeMs: number, now: () => number = performance.now.bind(performance)): () => Promise<T> {
  let inFlight: Promise<T> | undefined
  let cached: { value: T; startedAt: number } | undefined
  return () => {
    if (cached && now() - cached.startedAt < maxAgeMs) return Promise.resolve(cached.value)
    if (inFlight) return inFlight
    const startedAt = now()
    inFlight = read().then(
      (value) => {
        if (maxAgeMs > 0) cached = { value, startedAt }
        inFlight = undefined
        return value
      },
      (err: unknown) => {
        inFlight = undefined
        throw err
      },
    )
    return inFlight
  }
}
