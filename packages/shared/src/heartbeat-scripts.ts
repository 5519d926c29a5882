import { MAX_JOB_COUNT } from './schemas.js'

/*
 * The Lua scripts behind the heartbeat store. Each shard (hash-tag group) holds:
 *   <tag>:nodes       ZSET  node id -> time of its last heartbeat, ms on the Redis server's clock
 *   <tag>:node:<id>   HASH  hostname, ip, downloading, muxing, uploading, instance, agent_time_ms, seen_ms
 *   <tag>:totals      HASH  downloading, muxing, uploading: the sums over every member of <tag>:nodes
 *
 * Invariant, kept by every script atomically: the totals are the sums of the records of the ZSET's members, and
 * every member has a valid record. A beat adds the node's change in counts; pruning a stale node (or removing one
 * on shutdown) subtracts its last counts. So reading the totals costs O(nodes pruned since the last read), never
 * O(fleet). Anything that breaks the invariant from outside (garbage written under the prefix) is detected on the
 * spot, dropped, and the shard is recounted; scripts report how many records they dropped so callers can log it.
 */

const PRELUDE = `
-- Redis < 7 needs this before TIME in a script that writes; from Redis 7 on it is a no-op.
if redis.replicate_commands then pcall(redis.replicate_commands) end

local MAX_JOB_COUNT = ${MAX_JOB_COUNT}
-- Sums stay exact in Lua's doubles (and in JSON) far below 2^53.
local MAX_TOTAL = 1e15

local function jobCount(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n < 0 or n > MAX_JOB_COUNT or n ~= math.floor(n) then return nil end
  return n
end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- {downloading, muxing, uploading, instance} of a record, or nil when it is missing or garbage.
local function readRecord(key)
  local f = redis.pcall('HMGET', key, 'downloading', 'muxing', 'uploading', 'instance')
  if f.err then return nil end
  local d, m, u = jobCount(f[1]), jobCount(f[2]), jobCount(f[3])
  if d == nil or m == nil or u == nil then return nil end
  return { d, m, u, f[4] or '' }
end

-- The kept totals, or nil when the key has the wrong type or a field is not a non-negative integer.
local function readTotals(key)
  local f = redis.pcall('HMGET', key, 'downloading', 'muxing', 'uploading')
  if f.err then return nil end
  local out = {}
  for i = 1, 3 do
    if f[i] == false then out[i] = 0 else
      local n = tonumber(f[i])
      if n == nil or n ~= n or n < 0 or n > MAX_TOTAL or n ~= math.floor(n) then return nil end
      out[i] = n
    end
  end
  return out
end

local function addToTotals(key, sign, counts)
  if counts[1] ~= 0 then redis.call('HINCRBY', key, 'downloading', sign * counts[1]) end
  if counts[2] ~= 0 then redis.call('HINCRBY', key, 'muxing', sign * counts[2]) end
  if counts[3] ~= 0 then redis.call('HINCRBY', key, 'uploading', sign * counts[3]) end
end

-- Rebuilds the totals from the members' records, dropping members whose record is garbage.
-- O(members of this shard): runs only when asked for, or when garbage was found. Returns {d, m, u, dropped}.
local function recount(nodesKey, totalsKey, nodePrefix)
  if redis.call('TYPE', nodesKey)['ok'] ~= 'zset' then redis.call('DEL', nodesKey) end
  local sums = { 0, 0, 0 }
  local dropped = 0
  for _, id in ipairs(redis.call('ZRANGE', nodesKey, 0, -1)) do
    local rec = readRecord(nodePrefix .. id)
    if rec then
      for i = 1, 3 do sums[i] = sums[i] + rec[i] end
    else
      dropped = dropped + 1
      redis.call('ZREM', nodesKey, id)
      redis.call('DEL', nodePrefix .. id)
    end
  end
  redis.call('DEL', totalsKey)
  redis.call('HSET', totalsKey, 'downloading', sums[1], 'muxing', sums[2], 'uploading', sums[3])
  return { sums[1], sums[2], sums[3], dropped }
end

-- Checks the shard's own keys; recounts when they are not what the scripts wrote. Returns records dropped.
local function ensureSound(nodesKey, totalsKey, nodePrefix)
  local card = redis.pcall('ZCARD', nodesKey)
  if type(card) == 'number' and readTotals(totalsKey) then return 0 end
  return recount(nodesKey, totalsKey, nodePrefix)[4]
end

-- Removes members last seen before cutoff (at most limit of them; limit 0 means all) and subtracts their counts.
-- Returns pruned, dropped.
local function prune(nodesKey, totalsKey, nodePrefix, cutoff, limit)
  local stale
  if limit > 0 then
    stale = redis.call('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  else
    stale = redis.call('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff)
  end
  local dropped = 0
  for _, id in ipairs(stale) do
    local key = nodePrefix .. id
    local rec = readRecord(key)
    redis.call('ZREM', nodesKey, id)
    redis.call('DEL', key)
    if rec then addToTotals(totalsKey, -1, rec) else dropped = dropped + 1 end
  end
  if dropped > 0 then recount(nodesKey, totalsKey, nodePrefix) end
  return #stale, dropped
end
`

/**
 * One heartbeat. KEYS: nodes, node record, totals.
 * ARGV: nodeId, instanceId, hostname, ip, downloading, muxing, uploading, agentTimeMs, staleAfterMs, pruneLimit,
 * nodePrefix. Returns {previous instance or '', previous age in ms or -1, pruned, dropped, now}.
 * Validates everything before its first write, so a bad call changes nothing.
 */
export const BEAT_SCRIPT = `${PRELUDE}
local nodesKey, nodeKey, totalsKey = KEYS[1], KEYS[2], KEYS[3]
local nodeId, instanceId = ARGV[1], ARGV[2]
local counts = { jobCount(ARGV[5]), jobCount(ARGV[6]), jobCount(ARGV[7]) }
local staleAfterMs, pruneLimit = tonumber(ARGV[9]), tonumber(ARGV[10])
local nodePrefix = ARGV[11]
if counts[1] == nil or counts[2] == nil or counts[3] == nil then
  return redis.error_reply('ERR tornado heartbeat: counts must be integers from 0 to ' .. MAX_JOB_COUNT)
end
if staleAfterMs == nil or staleAfterMs <= 0 or pruneLimit == nil or pruneLimit < 0 then
  return redis.error_reply('ERR tornado heartbeat: bad staleAfterMs or pruneLimit')
end
if nodeId == '' or instanceId == '' or nodePrefix .. nodeId ~= nodeKey then
  return redis.error_reply('ERR tornado heartbeat: node id and record key disagree')
end

local now = nowMs()
local dropped = ensureSound(nodesKey, totalsKey, nodePrefix)
local previous = { 0, 0, 0 }
local previousInstance, previousAge = '', -1
local lastSeen = redis.call('ZSCORE', nodesKey, nodeId)
if lastSeen then
  previousAge = now - tonumber(lastSeen)
  local rec = readRecord(nodeKey)
  if rec then
    previous = rec
    previousInstance = rec[4]
  else
    -- A member with a garbage record: its counts in the totals are unknown, so recount without it.
    redis.call('ZREM', nodesKey, nodeId)
    redis.call('DEL', nodeKey)
    dropped = dropped + 1 + recount(nodesKey, totalsKey, nodePrefix)[4]
  end
elseif redis.call('EXISTS', nodeKey) == 1 then
  redis.call('DEL', nodeKey) -- a leftover that was never counted (or has the wrong type)
end

redis.call('HSET', nodeKey,
  'hostname', ARGV[3], 'ip', ARGV[4],
  'downloading', counts[1], 'muxing', counts[2], 'uploading', counts[3],
  'instance', instanceId, 'agent_time_ms', ARGV[8], 'seen_ms', now)
redis.call('ZADD', nodesKey, now, nodeId)
addToTotals(totalsKey, 1, { counts[1] - previous[1], counts[2] - previous[2], counts[3] - previous[3] })

local pruned, prunedDropped = prune(nodesKey, totalsKey, nodePrefix, now - staleAfterMs, pruneLimit)
return { previousInstance, previousAge, pruned, dropped + prunedDropped, now }
`

/**
 * Removes a node at once (graceful shutdown). KEYS: nodes, node record, totals. ARGV: nodeId, instanceId, nodePrefix.
 * Leaves a record written by another agent instance alone. Returns 1 removed, 0 not there, -1 owned by another.
 */
export const REMOVE_SCRIPT = `${PRELUDE}
local nodesKey, nodeKey, totalsKey = KEYS[1], KEYS[2], KEYS[3]
local nodeId, instanceId, nodePrefix = ARGV[1], ARGV[2], ARGV[3]
ensureSound(nodesKey, totalsKey, nodePrefix)
if not redis.call('ZSCORE', nodesKey, nodeId) then return 0 end
local rec = readRecord(nodeKey)
if rec and rec[4] ~= instanceId then return -1 end
redis.call('ZREM', nodesKey, nodeId)
redis.call('DEL', nodeKey)
if rec then addToTotals(totalsKey, -1, rec) else recount(nodesKey, totalsKey, nodePrefix) end
return 1
`

/**
 * The totals of one shard, after pruning every node not seen for staleAfterMs. KEYS: nodes, totals.
 * ARGV: staleAfterMs, nodePrefix. Returns {downloading, muxing, uploading, live nodes, pruned, dropped, now}.
 */
export const TOTALS_SCRIPT = `${PRELUDE}
local nodesKey, totalsKey = KEYS[1], KEYS[2]
local staleAfterMs, nodePrefix = tonumber(ARGV[1]), ARGV[2]
if staleAfterMs == nil or staleAfterMs <= 0 then return redis.error_reply('ERR tornado totals: bad staleAfterMs') end
local now = nowMs()
local dropped = ensureSound(nodesKey, totalsKey, nodePrefix)
local pruned, prunedDropped = prune(nodesKey, totalsKey, nodePrefix, now - staleAfterMs, 0)
local totals = readTotals(totalsKey)
return { totals[1], totals[2], totals[3], redis.call('ZCARD', nodesKey), pruned, dropped + prunedDropped, now }
`

/**
 * Operators' full recount of one shard: prunes stale nodes, then rebuilds the totals from the records.
 * KEYS: nodes, totals. ARGV: staleAfterMs, nodePrefix.
 * Returns {kept downloading, muxing, uploading (before), recounted downloading, muxing, uploading, live nodes, dropped}.
 */
export const RECOUNT_SCRIPT = `${PRELUDE}
local nodesKey, totalsKey = KEYS[1], KEYS[2]
local staleAfterMs, nodePrefix = tonumber(ARGV[1]), ARGV[2]
if staleAfterMs == nil or staleAfterMs <= 0 then return redis.error_reply('ERR tornado recount: bad staleAfterMs') end
local dropped = ensureSound(nodesKey, totalsKey, nodePrefix)
local _, prunedDropped = prune(nodesKey, totalsKey, nodePrefix, nowMs() - staleAfterMs, 0)
local kept = readTotals(totalsKey)
local fresh = recount(nodesKey, totalsKey, nodePrefix)
return { kept[1], kept[2], kept[3], fresh[1], fresh[2], fresh[3], redis.call('ZCARD', nodesKey), dropped + prunedDropped + fresh[4] }
`
