export { RedisServer, freePort } from './redis-server.js'
