export * from './schemas.js'
export * from './config.js'
export * from './heartbeat-store.js'
export * from './redis-client.js'
