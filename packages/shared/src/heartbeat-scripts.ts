import { MAX_JOB_COUNT } from './schemas.js'

/*
 * The Lua scripts behind the heartbeat store. A node's record is one string, not a hash, so that a beat reads the
 * old record and writes the new one in one command (SET ... GET): at thousands of beats a second every Redis call
 * inside the script counts. hostname comes last so that nothing in it can shift the other fields. Each shard (hash-tag group) holds:
 *   <tag>:nodes       ZSET  node id -> time of its last heartbeat, ms on the Redis server's clock
 *   <tag>:node:<id>   STRING  "downloading|muxing|uploading|seen_ms|agent_time_ms|instance|ip|hostname"
 *   <tag>:totals      HASH  downloading, muxing, uploading: the sums over every member of <tag>:nodes
 *
 * Invariant, kept by every script atomically: the totals are the sums of the records of the ZSET's members, and
 * every member has a valid record. A beat adds the node's change in counts; pruning a stale node (or removing one
 * on shutdown) subtracts its last counts. So reading the totals costs O(nodes pruned since the last read), never
 * O(fleet). Anything that breaks the invariant from outside (garbage written under the prefix) is detected on the
 * spot, dropped, and the shard is recounted; scripts report how many records they dropped (a node set or totals key
 * of the wrong type or with garbage values counts as one) so callers can log it.
 */

const PRELUDE = `
-- Redis < 7 needs this before TIME in a script that writes (Redis 7 replicates effects and has REDIS_VERSION_NUM).
if not redis.REDIS_VERSION_NUM then redis.replicate_commands() end

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
-- {downloading, muxing, uploading, instance, seen_ms, ip, hostname} of a record's text, or nil when it is garbage.
local function parseRecord(text)
  if type(text) ~= 'string' then return nil end
  local d, m, u, seen, _, instance, ip, hostname = string.match(text, '^(%d+)|(%d+)|(%d+)|(%d+)|(%d*)|([^|]+)|([^|]*)|(.*)$')
  d, m, u = jobCount(d), jobCount(m), jobCount(u)
  if d == nil or m == nil or u == nil then return nil end
  return { d, m, u, instance, tonumber(seen), ip, hostname }
end

local function readRecord(key)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then return nil end
  return parseRecord(value)
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

-- Adds sign * counts to the totals; false when the totals key was garbage (the caller then recounts).
local STAGES = { 'downloading', 'muxing', 'uploading' }
local function addToTotals(key, sign, counts)
  for i = 1, 3 do
    if counts[i] ~= 0 and type(redis.pcall('HINCRBY', key, STAGES[i], sign * counts[i])) ~= 'number' then
      return false
    end
  end
  return true
end

-- A key of the wrong type where the node set belongs: its members would be lost, but every record says when its
-- node was last seen, so the set is rebuilt from the records, garbage ones dropped. One SCAN of the keyspace,
-- only ever after such damage. A least-privilege user (README: Redis ACL users) may not SCAN, nor the API's ZADD:
-- then the set is only emptied, and each live node is back in it, and in the totals, with its next beat.
-- Returns the records dropped.
local function rebuildMembers(nodesKey, nodePrefix)
  redis.call('DEL', nodesKey)
  if redis.acl_check_cmd and not (redis.acl_check_cmd('SCAN', '0') and redis.acl_check_cmd('ZADD', nodesKey, '0', 'x')) then
    return 0
  end
  local dropped = 0
  local cursor = '0'
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', nodePrefix .. '*', 'COUNT', 1000)
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do
      local rec = readRecord(key)
      if rec then
        redis.call('ZADD', nodesKey, rec[5], string.sub(key, #nodePrefix + 1))
      elseif redis.call('DEL', key) == 1 then -- SCAN may return a key twice: count it once
        dropped = dropped + 1
      end
    end
  until cursor == '0'
  return dropped
end

-- Rebuilds the totals from the members' records, dropping members whose record is garbage; a node set or totals
-- key that was garbage itself counts as one more dropped.
-- O(members of this shard): runs only when asked for, or when garbage was found. Returns {d, m, u, dropped}.
local function recount(nodesKey, totalsKey, nodePrefix)
  local dropped = 0
  local nodesType = redis.call('TYPE', nodesKey)['ok']
  if nodesType ~= 'zset' and nodesType ~= 'none' then dropped = 1 + rebuildMembers(nodesKey, nodePrefix) end
  if redis.call('EXISTS', totalsKey) == 1 and not readTotals(totalsKey) then dropped = dropped + 1 end
  local sums = { 0, 0, 0 }
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
    stale = redis.pcall('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  else
    stale = redis.pcall('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff)
  end
  if stale.err then return 0, recount(nodesKey, totalsKey, nodePrefix)[4] end
  local dropped = 0
  local sound = true
  for _, id in ipairs(stale) do
    local key = nodePrefix .. id
    local rec = readRecord(key)
    redis.call('ZREM', nodesKey, id)
    redis.call('DEL', key)
    if not rec then
      dropped = dropped + 1
      sound = false
    elseif sound then
      sound = addToTotals(totalsKey, -1, rec)
    end
  end
  if not sound then recount(nodesKey, totalsKey, nodePrefix) end
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
if string.find(instanceId, '|', 1, true) or string.find(ARGV[4], '|', 1, true) or not string.match(ARGV[8], '^%d*$') then
  return redis.error_reply('ERR tornado heartbeat: instance id and ip must not contain |, agent time must be digits')
end

-- Every beat runs this, thousands of times a second: few calls, and wrong key types are caught by pcall on the
-- first use of each key instead of checked up front.
local now = nowMs()
local record = table.concat({ counts[1], counts[2], counts[3], now, ARGV[8], instanceId, ARGV[4], ARGV[3] }, '|')
local old = redis.pcall('SET', nodeKey, record, 'GET')
local dropped = 0
if type(old) == 'table' and old.err then
  redis.call('DEL', nodeKey) -- a key of the wrong type where our record belongs
  redis.call('SET', nodeKey, record)
  old = false
  dropped = 1
end

-- ZADD answers 1 when the node was not a member: then nothing of its old record is in the totals.
local added = redis.pcall('ZADD', nodesKey, now, nodeId)
local previousInstance, previousAge = '', -1
local needRecount = type(added) ~= 'number'
if not needRecount and added == 0 then
  local previous = parseRecord(old)
  if previous == nil then
    dropped = 1 -- a member whose record was garbage (or missing): its share of the totals is unknown
    needRecount = true
  else
    previousInstance = previous[4]
    previousAge = now - previous[5]
    needRecount = not addToTotals(totalsKey, 1, { counts[1] - previous[1], counts[2] - previous[2], counts[3] - previous[3] })
  end
elseif not needRecount then
  needRecount = not addToTotals(totalsKey, 1, counts)
end
if needRecount then
  dropped = dropped + recount(nodesKey, totalsKey, nodePrefix)[4]
  -- A node set of the wrong type was emptied rather than rebuilt (no right to SCAN): this node joins it again.
  if not redis.call('ZSCORE', nodesKey, nodeId) then
    redis.call('ZADD', nodesKey, now, nodeId)
    addToTotals(totalsKey, 1, counts)
  end
end

-- One beat in eight also prunes a few stale nodes, so records stay bounded even when no API reads.
local pruned = 0
if now % 8 == 0 then
  local prunedDropped
  pruned, prunedDropped = prune(nodesKey, totalsKey, nodePrefix, now - staleAfterMs, pruneLimit)
  dropped = dropped + prunedDropped
end
return { previousInstance, previousAge, pruned, dropped, now }
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
if not (rec and addToTotals(totalsKey, -1, rec)) then recount(nodesKey, totalsKey, nodePrefix) end
return 1
`

/**
 * The totals of one shard, after pruning every node not seen for staleAfterMs. KEYS: nodes, totals.
 * ARGV: staleAfterMs, nodePrefix, freshWithinMs (optional, default staleAfterMs).
 * Returns {downloading, muxing, uploading, live nodes, pruned, dropped, now, fresh nodes}: fresh nodes are those whose
 * last heartbeat is younger than freshWithinMs (one ZCOUNT, O(log n)).
 */
export const TOTALS_SCRIPT = `${PRELUDE}
local nodesKey, totalsKey = KEYS[1], KEYS[2]
local staleAfterMs, nodePrefix = tonumber(ARGV[1]), ARGV[2]
if staleAfterMs == nil or staleAfterMs <= 0 then return redis.error_reply('ERR tornado totals: bad staleAfterMs') end
local now = nowMs()
local freshWithinMs = tonumber(ARGV[3]) or staleAfterMs
local pruned, dropped = prune(nodesKey, totalsKey, nodePrefix, now - staleAfterMs, 0)
local totals = readTotals(totalsKey)
if not totals then
  local sums = recount(nodesKey, totalsKey, nodePrefix)
  totals = sums
  dropped = dropped + sums[4]
end
local fresh = redis.call('ZCOUNT', nodesKey, '(' .. (now - freshWithinMs), '+inf')
return { totals[1], totals[2], totals[3], redis.call('ZCARD', nodesKey), pruned, dropped, now, fresh }
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

/**
 * Every live node of one shard with its record, after pruning every node not seen for staleAfterMs (as a totals
 * read does, so both agree). KEYS: nodes, totals. ARGV: staleAfterMs, nodePrefix.
 * Returns {now, pruned, dropped, then per node: id, hostname, ip, downloading, muxing, uploading, seen ms}.
 * O(live nodes of the shard) by nature: a node table needs every row. Members whose record is garbage are left
 * out, dropped and the shard recounted, as every other script does.
 */
export const LIST_SCRIPT = `${PRELUDE}
local nodesKey, totalsKey = KEYS[1], KEYS[2]
local staleAfterMs, nodePrefix = tonumber(ARGV[1]), ARGV[2]
if staleAfterMs == nil or staleAfterMs <= 0 then return redis.error_reply('ERR tornado list: bad staleAfterMs') end
local now = nowMs()
local pruned, dropped = prune(nodesKey, totalsKey, nodePrefix, now - staleAfterMs, 0)
-- prune leaves nodesKey a ZSET or absent.
local members = redis.call('ZRANGE', nodesKey, 0, -1, 'WITHSCORES')
local out = { now, pruned, 0 }
local garbage = 0
for i = 1, #members, 2 do
  local id = members[i]
  local rec = readRecord(nodePrefix .. id)
  if rec == nil then
    garbage = garbage + 1
  else
    local n = #out
    out[n + 1], out[n + 2], out[n + 3] = id, rec[7], rec[6]
    out[n + 4], out[n + 5], out[n + 6], out[n + 7] = rec[1], rec[2], rec[3], tonumber(members[i + 1])
  end
end
if garbage > 0 then dropped = dropped + recount(nodesKey, totalsKey, nodePrefix)[4] end
out[3] = dropped
return out
`
