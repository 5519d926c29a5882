export { RedisServer, freePort } from './redis-server.js'
export { builtBin, childEnv } from './built-bin.js'
export { REQUEST_TIMEOUT_REPLY, sendAndWait } from './raw-http.js'
