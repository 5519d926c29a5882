export { RedisServer, freePort } from './redis-server.js'
export { builtBin, childEnv } from './built-bin.js'
