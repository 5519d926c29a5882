import type { Server, ServerResponse } from 'node:http'

/**
 * Returns what closing calls: it waits until every request received has been answered, or graceMs, then closes every
 * connection left. server.close() alone closes only idle ones and waits for the rest, so a client that never finishes
 * its request (connects and sends nothing, stops mid-headers or mid-body) would hold the stop indefinitely.
 */
export function connectionsCloser(server: Server): (graceMs: number) => Promise<void> {
  const open = new Set<ServerResponse>()
  let onDrained: (() => void) | undefined
  server.on('request', (_request, response: ServerResponse) => {
    open.add(response)
    response.once('close', () => {
      open.delete(response)
      if (open.size === 0) onDrained?.()
    })
  })
  return (graceMs) =>
    new Promise<void>((resolve) => {
      const closeAll = () => {
        clearTimeout(timer)
        onDrained = undefined
        // Called from preClose, before Fastify's server.close(), which follows without an I/O turn in between:
        // no connection can arrive in the gap.
        server.closeAllConnections()
        resolve()
      }
      const timer = setTimeout(closeAll, graceMs)
      onDrained = closeAll
      if (open.size === 0) closeAll()
    })
}
