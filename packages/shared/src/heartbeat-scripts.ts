import { MAX_JOB_COUNT } from './schemas.js'

/*
 * The Lua scripts behind the heartbeat store. A node's record is one string, not a hash, so that a beat reads the
 * old record and writes the new one in one command (SET ... GET): at thousands of beats a second every Redis call
 * inside the script counts. hostname comes last so that nothing in it can shift the other fields. Each shard (hash-tag group) holds:
 *   <tag>:nodes       ZSET  node id -> time of its last heartbeat, ms on the Redis server's clock
 *   <tag>:node:<id>   STRING  "downloading|muxing|uploading|seen_ms|agent_time_ms|instance|ip|hostname"
 *   <tag>:totals      HASH  downloading, muxing, uploading: the sums over every member of <tag>:nodes;
 *                           members: how many members' counts those sums hold;
 *                           recounted_ms: when a recount last wrote it (see readTotals)
 *
 * Invariant, kept by every script atomically: the totals are the sums of the records of the ZSET's members, members
 * is the ZSET's size, and every member has a valid record. A beat adds the node's change in counts; a node that
 * joins the set (ZADD answers 1) adds its full counts and 1 to members; pruning a stale node (or removing one on
 * shutdown) subtracts its last counts and 1 from members. So reading the totals costs O(nodes pruned since the last
 * read), never O(fleet), and a beat is O(1) whatever happened before it. Anything that breaks the invariant from
 * outside (garbage written under the prefix) is detected on the spot, dropped, and the shard is recounted; scripts
 * report how many records they dropped (a node set or totals key of the wrong type or with garbage values counts as
 * one, as does a missing totals key that was not zero, or a node set whose size is not the members the totals hold:
 * the set or some of its members deleted from outside) so callers can log it. Pruning and removal delete a node's
 * record with its membership: a record whose node is not a member is left over from damage, never part of the
 * normal life of a node. Such a node's next beat joins it again like any other (see BEAT_SCRIPT).
 */

const PRELUDE = `
-- Redis < 7 needs this before TIME in a script that writes (Redis 7 replicates effects and has REDIS_VERSION_NUM).
if not redis.REDIS_VERSION_NUM then redis.replicate_commands() end

local MAX_JOB_COUNT = ${MAX_JOB_COUNT}
-- Sums stay exact in Lua's doubles (and in JSON) far below 2^53.
local MAX_TOTAL = 1e15
-- Every seen_ms and node set score is stamped by a beat with Redis's own TIME, so none is ever later than Redis's
-- now, unless the server's clock was stepped back (an NTP correction): 60 s of tolerance covers such a step. Anything
-- further ahead is garbage; trusted, it would never be pruned and would be counted forever.
local FUTURE_TOLERANCE_MS = 60000

-- Plain decimal digits only: Lua's tonumber also takes '0x10', '1e3', ' 7' and '5.0', none of which a script writes.
local function jobCount(v)
  if type(v) ~= 'string' or not string.match(v, '^%d+$') then return nil end
  local n = tonumber(v)
  if n > MAX_JOB_COUNT then return nil end
  return n
end

-- One script is one instant: TIME is asked once, however many records are checked against it.
local now_ms
local function nowMs()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end

-- {downloading, muxing, uploading, instance, seen_ms, ip, hostname} of a record's text, or nil when it is garbage
-- (a seen_ms from the future included).
local function parseRecord(text)
  if type(text) ~= 'string' then return nil end
  local d, m, u, seen, _, instance, ip, hostname = string.match(text, '^(%d+)|(%d+)|(%d+)|(%d+)|(%d*)|([^|]+)|([^|]*)|(.*)$')
  d, m, u = jobCount(d), jobCount(m), jobCount(u)
  if d == nil or m == nil or u == nil then return nil end
  seen = tonumber(seen)
  if seen > nowMs() + FUTURE_TOLERANCE_MS then return nil end
  return { d, m, u, instance, seen, ip, hostname }
end

local function readRecord(key)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then return nil end
  return parseRecord(value)
end

-- A totals value as HINCRBY writes it: '0' or digits without a leading zero (HINCRBY itself refuses any other form,
-- and a negative sum of non-negative counts is garbage too).
local function plainTotal(v)
  if type(v) ~= 'string' or not (v == '0' or string.match(v, '^[1-9]%d*$')) then return nil end
  local n = tonumber(v)
  if n > MAX_TOTAL then return nil end
  return n
end

-- The kept totals, whether a recount wrote them (sealed) and, when sealed, how many members' counts they hold; or nil
-- when the key has the wrong type or a value is garbage. Unsealed, they may be a missing key read as zeros, or a key
-- that HINCRBY recreated from one beat's change after it was deleted: only a recount tells whether they are the sums
-- (see checkedRecount), and their members says nothing. Every recount writes recounted_ms and members with the three
-- sums and HINCRBY never deletes a field, so a sealed key lacking a sum or members is garbage.
local function readTotals(key)
  local f = redis.pcall('HMGET', key, 'downloading', 'muxing', 'uploading', 'recounted_ms', 'members')
  if f.err then return nil end
  local sealed = f[4] ~= false
  local members
  if sealed then
    members = plainTotal(f[5])
    if not (plainTotal(f[4]) and members) then return nil end
  end
  local out = {}
  for i = 1, 3 do
    if f[i] == false then
      if sealed then return nil end
      out[i] = 0
    else
      out[i] = plainTotal(f[i])
      if out[i] == nil then return nil end
    end
  end
  return out, sealed, members
end

-- Adds sign * counts to the totals, and sign * members (optional: nodes joining or leaving the set) to their
-- members; false when the totals key was garbage (the caller then recounts). Also true as second value when a sum or
-- members was 0 or absent before (HINCRBY answered its own increment): the key may have been deleted and just
-- recreated by this call, which the caller checks (one HMGET, only then).
local FIELDS = { 'downloading', 'muxing', 'uploading', 'members' }
local function addToTotals(key, sign, counts, members)
  local fresh = false
  for i = 1, 4 do
    local by = sign * (i < 4 and counts[i] or members or 0)
    if by ~= 0 then
      local n = redis.pcall('HINCRBY', key, FIELDS[i], by)
      if type(n) ~= 'number' or n < 0 or n > MAX_TOTAL then return false end
      if n == by then fresh = true end
    end
  end
  return true, fresh
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

-- Rebuilds the totals (and members: the members counted) from the members' records, dropping members whose record
-- is garbage; a node set or totals key that was garbage itself counts as one more dropped.
-- O(members of this shard): runs only when asked for, or when garbage was found. Returns {d, m, u, dropped}.
local function recount(nodesKey, totalsKey, nodePrefix)
  local dropped = 0
  local nodesType = redis.call('TYPE', nodesKey)['ok']
  if nodesType ~= 'zset' and nodesType ~= 'none' then dropped = 1 + rebuildMembers(nodesKey, nodePrefix) end
  if redis.call('EXISTS', totalsKey) == 1 and not readTotals(totalsKey) then dropped = dropped + 1 end
  local sums = { 0, 0, 0 }
  local members = 0
  for _, id in ipairs(redis.call('ZRANGE', nodesKey, 0, -1)) do
    local rec = readRecord(nodePrefix .. id)
    if rec then
      for i = 1, 3 do sums[i] = sums[i] + rec[i] end
      members = members + 1
    else
      dropped = dropped + 1
      redis.call('ZREM', nodesKey, id)
      redis.call('DEL', nodePrefix .. id)
    end
  end
  redis.call('DEL', totalsKey)
  redis.call('HSET', totalsKey, 'downloading', sums[1], 'muxing', sums[2], 'uploading', sums[3], 'members', members,
    'recounted_ms', nowMs())
  return { sums[1], sums[2], sums[3], dropped }
end

-- Recounts totals that were unsealed (kept: as readTotals read them): they count as one dropped when they were
-- not the sums, a deleted key that still had members for one. Returns {d, m, u, dropped}.
local function checkedRecount(nodesKey, totalsKey, nodePrefix, kept)
  local sums = recount(nodesKey, totalsKey, nodePrefix)
  if kept[1] ~= sums[1] or kept[2] ~= sums[2] or kept[3] ~= sums[3] then sums[4] = sums[4] + 1 end
  return sums
end

-- The shard's totals once its own keys are what the scripts wrote, recounting them when not. Unsealed zeros of an
-- empty shard (no totals key yet) need no recount. Returns {d, m, u, dropped}.
local function soundTotals(nodesKey, totalsKey, nodePrefix)
  local card = redis.pcall('ZCARD', nodesKey)
  local totals, sealed, members = readTotals(totalsKey)
  if type(card) ~= 'number' or not totals then return recount(nodesKey, totalsKey, nodePrefix) end
  if sealed then
    if members == card then return { totals[1], totals[2], totals[3], 0 } end
    -- The sums hold the counts of more or fewer nodes than the set has members: the set, or some of its members,
    -- were deleted from outside (their counts are still in the sums, and beats may since have added some of those
    -- nodes again). A recount makes sums and members exact over the current members; from then each join adds
    -- both, each prune or removal subtracts both, so they stay exact, and a count that disagrees again is new damage.
    -- Counted as one dropped, so that it is logged.
    local sums = recount(nodesKey, totalsKey, nodePrefix)
    sums[4] = sums[4] + 1
    return sums
  end
  if card == 0 and totals[1] == 0 and totals[2] == 0 and totals[3] == 0 then return { 0, 0, 0, 0 } end
  return checkedRecount(nodesKey, totalsKey, nodePrefix, totals)
end

-- Checks the shard's own keys; recounts when they are not what the scripts wrote. Returns records dropped.
local function ensureSound(nodesKey, totalsKey, nodePrefix)
  return soundTotals(nodesKey, totalsKey, nodePrefix)[4]
end

-- Members stamped later than now (beyond FUTURE_TOLERANCE_MS) would never be pruned: each is dropped with its
-- record and the shard recounted. One O(log n) call when there are none. Returns records dropped.
local function dropFuture(nodesKey, totalsKey, nodePrefix)
  local ahead = redis.pcall('ZRANGEBYSCORE', nodesKey, '(' .. (nowMs() + FUTURE_TOLERANCE_MS), '+inf')
  if ahead.err then return recount(nodesKey, totalsKey, nodePrefix)[4] end
  if #ahead == 0 then return 0 end
  for _, id in ipairs(ahead) do
    redis.call('ZREM', nodesKey, id)
    redis.call('DEL', nodePrefix .. id)
  end
  return #ahead + recount(nodesKey, totalsKey, nodePrefix)[4]
end

-- Removes members last seen before cutoff (at most limit of them; limit 0 means all) and subtracts their counts and
-- their number from the totals, in one batch. Returns pruned, dropped.
local function prune(nodesKey, totalsKey, nodePrefix, cutoff, limit)
  local stale
  if limit > 0 then
    stale = redis.pcall('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  else
    stale = redis.pcall('ZRANGEBYSCORE', nodesKey, '-inf', '(' .. cutoff)
  end
  if stale.err then return 0, recount(nodesKey, totalsKey, nodePrefix)[4] end
  if #stale == 0 then return 0, 0 end
  local dropped = 0
  local gone = { 0, 0, 0 }
  for _, id in ipairs(stale) do
    local key = nodePrefix .. id
    local rec = readRecord(key)
    redis.call('ZREM', nodesKey, id)
    redis.call('DEL', key)
    if rec then
      for i = 1, 3 do gone[i] = gone[i] + rec[i] end
    else
      dropped = dropped + 1
    end
  end
  -- A garbage record's share of the totals is unknown: recount. A totals key found garbage (or deleted: a sum or
  -- members went negative) counts in what the recount dropped.
  local sound = dropped == 0 and addToTotals(totalsKey, -1, gone, #stale)
  if not sound then dropped = dropped + recount(nodesKey, totalsKey, nodePrefix)[4] end
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

-- ZADD answers 1 when the node was not a member: its full counts are added, and 1 to members (only on this join path;
-- a normal beat makes no more calls for it). Pruning and removal take its counts and membership out together, so
-- nothing of a new or returning node is in the totals. A node with a valid old record that was no member left the
-- set some other way (its member or the whole set deleted from outside, or a set of the wrong type emptied without
-- the right to SCAN): its old counts may still be in the sums, but then so is its 1 in members, which joining again
-- makes one more than the set's size; the next read sees that and recounts (soundTotals). Recounting here instead
-- cost O(shard) per returning node, O(n^2) for a whole shard coming back after its set was deleted.
local added = redis.pcall('ZADD', nodesKey, now, nodeId)
local previous = parseRecord(old)
local previousInstance, previousAge = '', -1
if previous then previousInstance, previousAge = previous[4], math.max(0, now - previous[5]) end
local needRecount = type(added) ~= 'number'
local sound, fresh = true, false
if needRecount then
  -- the node set had the wrong type: recounted below
elseif added == 0 then
  if previous == nil then
    dropped = 1 -- a member whose record was garbage (or missing): its share of the totals is unknown
    needRecount = true
  else
    sound, fresh = addToTotals(totalsKey, 1, { counts[1] - previous[1], counts[2] - previous[2], counts[3] - previous[3] })
  end
else
  sound, fresh = addToTotals(totalsKey, 1, counts, 1)
end
needRecount = needRecount or not sound
if fresh and not needRecount then
  -- A sum (or members) that was 0 or absent before this beat: if the totals key had been deleted, HINCRBY just recreated it
  -- from this beat's change alone. A key a recount wrote (sealed) is sound; only then is this one more call.
  local kept, sealed = readTotals(totalsKey)
  if not kept then
    needRecount = true
  elseif not sealed then
    dropped = dropped + checkedRecount(nodesKey, totalsKey, nodePrefix, kept)[4]
  end
end
if needRecount then
  dropped = dropped + recount(nodesKey, totalsKey, nodePrefix)[4]
  -- A node set of the wrong type was emptied rather than rebuilt (no right to SCAN): this node joins it again.
  if not redis.call('ZSCORE', nodesKey, nodeId) then
    redis.call('ZADD', nodesKey, now, nodeId)
    addToTotals(totalsKey, 1, counts, 1)
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
local rec = readRecord(nodeKey)
if rec and rec[4] ~= instanceId then return -1 end
if not redis.call('ZSCORE', nodesKey, nodeId) then
  if not rec then return 0 end
  -- This instance's record without its membership (see BEAT_SCRIPT): it would never be pruned, so it is deleted.
  -- ensureSound above just checked members against the set's size (recounting when they differed), so the totals
  -- hold no counts of this non-member.
  redis.call('DEL', nodeKey)
  return 1
end
redis.call('ZREM', nodesKey, nodeId)
redis.call('DEL', nodeKey)
if not (rec and addToTotals(totalsKey, -1, rec, 1)) then recount(nodesKey, totalsKey, nodePrefix) end
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
dropped = dropped + dropFuture(nodesKey, totalsKey, nodePrefix)
local totals = soundTotals(nodesKey, totalsKey, nodePrefix)
dropped = dropped + totals[4]
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
dropped = dropped + prunedDropped + dropFuture(nodesKey, totalsKey, nodePrefix)
local kept = readTotals(totalsKey) or { 0, 0, 0 }
local fresh = recount(nodesKey, totalsKey, nodePrefix)
return { kept[1], kept[2], kept[3], fresh[1], fresh[2], fresh[3], redis.call('ZCARD', nodesKey), dropped + fresh[4] }
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
-- After these, every score is between now - staleAfterMs and now + FUTURE_TOLERANCE_MS: ages stay safe integers.
dropped = dropped + dropFuture(nodesKey, totalsKey, nodePrefix)
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
