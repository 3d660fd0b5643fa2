package pipes

import "github.com/redis/rueidis"

// The Redis engine's Lua scripts. Each runs atomically in Redis, which is
// what makes the cluster-wide rules hold: a logged message gets its sequence
// number, its history entry and its publication in one step (so channel
// order is sequence order); a private message is delivered or queued in one
// step against the user's connection count, which UserConnect changes in
// one step with taking the queue.
//
// Keys are passed in KEYS where the script knows them in advance. The node
// clean-up scripts derive keys from index entries (the prefix in ARGV), which
// a single Redis server (or a replicated primary) allows; Redis Cluster is
// not supported.
//
// Numbers that may exceed 2^53 (user ids) stay strings in Lua: it holds
// numbers as doubles.

// scriptPublish appends to the history when the pipe logs and publishes.
//
//	KEYS: settings hash, seq counter, history zset, id index hash, members hash
//	ARGV: pipe, channel, body, exclude session, message id, "1" if it may log
//	returns {cluster-wide recipients, seq}
var scriptPublish = rueidis.NewLuaScript(`
local n = redis.call('HLEN', KEYS[5])
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[5], ARGV[4]) == 1 then n = n - 1 end
local seq = 0
if ARGV[6] == '1' then
  local keep = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
  if keep and keep > 0 then
    seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[3], seq, ARGV[3])
    redis.call('HSET', KEYS[4], ARGV[5], seq .. '|' .. ARGV[1])
    local over = redis.call('ZCARD', KEYS[3]) - keep
    if over > 0 then
      for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do
        redis.call('HDEL', KEYS[4], string.match(m, '^[^|]*'))
      end
      redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1)
    end
  end
end
redis.call('PUBLISH', ARGV[2], seq .. '|' .. ARGV[3])
return {n, seq}
`)

// scriptHistory reads a pipe's history after a sequence number, with the
// pipe's last sequence number.
//
//	KEYS: history zset, seq counter
//	ARGV: since
//	returns {last seq, {entry, score, entry, score, ...}}
var scriptHistory = rueidis.NewLuaScriptRetryable(`
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')
return {redis.call('GET', KEYS[2]) or '0', items}
`)

// scriptClearHistory removes a pipe's history (the sequence counter stays).
//
//	KEYS: history zset, id index hash
//	returns the number of messages removed
var scriptClearHistory = rueidis.NewLuaScript(`
local all = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, m in ipairs(all) do redis.call('HDEL', KEYS[2], string.match(m, '^[^|]*')) end
redis.call('DEL', KEYS[1])
return #all
`)

// scriptDeleteMessage removes one history entry by message id.
//
//	KEYS: id index hash
//	ARGV: message id, history key prefix (the pipe name completes it)
//	returns 0 or 1
var scriptDeleteMessage = rueidis.NewLuaScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local seq, pipe = string.match(v, '^(%d+)|(.*)$')
if not seq then return 0 end
return redis.call('ZREMRANGEBYSCORE', ARGV[2] .. pipe, seq, seq)
`)

// scriptSetLogLength sets a pipe's history length and trims the history; 0
// turns logging off and clears the history (the sequence counter stays).
//
//	KEYS: settings hash, history zset, id index hash
//	ARGV: pipe, length
var scriptSetLogLength = rueidis.NewLuaScript(`
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], keep)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local over = redis.call('ZCARD', KEYS[2]) - keep
if over > 0 then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('HDEL', KEYS[3], string.match(m, '^[^|]*'))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return 1
`)

// scriptSendPrivate delivers a private message to the nodes hosting the
// user's live connections, or queues it when there are none.
//
//	KEYS: the user's connections hash, queue list, queue index hash,
//	      tenant's queued-users set
//	ARGV: user, private payload, node channel prefix, now, event, data,
//	      queue max, not-before (expiry), queue ttl in ms
//	returns {1, connections} when delivered, {0, dropped} when queued
var scriptSendPrivate = rueidis.NewLuaScript(`
local nodes = redis.call('HVALS', KEYS[1])
if #nodes > 0 then
  local seen = {}
  for _, n in ipairs(nodes) do
    if not seen[n] then
      seen[n] = true
      redis.call('PUBLISH', ARGV[3] .. n .. ':ch', ARGV[2])
    end
  end
  return {1, #nodes}
end
local idx = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('RPUSH', KEYS[2], idx .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6])
local dropped = 0
local nb = tonumber(ARGV[8])
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then break end
  local t = tonumber(string.match(head, '^%d+|(%-?%d+)|'))
  if t and t < nb then
    redis.call('LPOP', KEYS[2])
    dropped = dropped + 1
  else
    break
  end
end
local max = tonumber(ARGV[7])
local len = redis.call('LLEN', KEYS[2])
if max > 0 and len > max then
  redis.call('LTRIM', KEYS[2], len - max, -1)
  dropped = dropped + len - max
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
  redis.call('SADD', KEYS[4], ARGV[1])
end
return {0, dropped}
`)

// scriptUserConnect counts a live connection cluster-wide; the first one
// sets users_time to 0 and reads the offline queue (which stays until
// scriptAckQueue).
//
//	KEYS: the user's connections hash, queue list, users_time hash,
//	      queued-users set, node index set
//	ARGV: session, node, max, user, index entry
//	returns {ok, first, queue entries}
var scriptUserConnect = rueidis.NewLuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1, 0, {}} end
local n = redis.call('HLEN', KEYS[1])
local max = tonumber(ARGV[3])
if max > 0 and n >= max then return {0, 0, {}} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[5])
if n > 0 then return {1, 0, {}} end
redis.call('HSET', KEYS[3], ARGV[4], 0)
return {1, 1, redis.call('LRANGE', KEYS[2], 0, -1)}
`)

// scriptAckQueue removes a user's queued messages up to an index (they
// reached a connection of the user).
//
//	KEYS: the user's queue list, tenant's queued-users set
//	ARGV: user, highest index delivered
//	returns the number removed
var scriptAckQueue = rueidis.NewLuaScript(`
local upto = tonumber(ARGV[2])
local n = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local idx = tonumber(string.match(head, '^(%d+)|'))
  if idx and idx > upto then break end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return n
`)

// scriptUserDisconnect undoes scriptUserConnect; the last connection sets
// users_time to now.
//
//	KEYS: the user's connections hash, users_time hash, node index set
//	ARGV: session, user, now, index entry
//	returns 1 for the user's last connection
var scriptUserDisconnect = rueidis.NewLuaScript(`
redis.call('SREM', KEYS[3], ARGV[4])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`)

// scriptJoin records a subscribed connection.
//
//	KEYS: members hash, active-pipes hash, node index set
//	ARGV: session, member, pipe, index entry
var scriptJoin = rueidis.NewLuaScript(`
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
redis.call('SADD', KEYS[3], ARGV[4])
return 1
`)

// scriptLeave removes a subscribed connection.
//
//	KEYS: members hash, active-pipes hash, node index set
//	ARGV: session, pipe, index entry
var scriptLeave = rueidis.NewLuaScript(`
redis.call('SREM', KEYS[3], ARGV[3])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 1
`)

// scriptReportOnline replaces this node's browser connection counts.
//
//	KEYS: the node's online hash
//	ARGV: ttl in ms, then dev, count pairs
var scriptReportOnline = rueidis.NewLuaScript(`
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`)

// scriptOnline sums the browser connections of a tenant reported by the
// live nodes other than the caller.
//
//	KEYS: the nodes set
//	ARGV: key prefix, dev, the calling node
var scriptOnline = rueidis.NewLuaScript(`
local sum = 0
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if n ~= ARGV[3] and redis.call('EXISTS', ARGV[1] .. ':node:' .. n) == 1 then
    local v = redis.call('HGET', ARGV[1] .. ':node:' .. n .. ':online', ARGV[2])
    if v then sum = sum + tonumber(v) end
  end
end
return sum
`)

// scriptHeartbeat refreshes the node's liveness key.
//
//	KEYS: liveness key, nodes set
//	ARGV: instance token, ttl in ms, node
//	returns 1 when the key held our token, 0 when it was missing (first
//	start, expired, or Redis lost its data), 2 when another instance's
//	token was there
var scriptHeartbeat = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if cur == ARGV[1] then return 1 end
if cur then return 2 end
return 0
`)

// luaDropEntry removes what one node index entry records and appends the
// resulting events to out: {'m', dev, pipe, member} for a member of a
// track_* pipe, {'u', dev, user, ”} for a user whose last connection it
// was (users_time is set to now).
const luaDropEntry = `
local function drop(P, e, now, out)
  local dev, pipe, sess = string.match(e, '^m|(%-?%d+)|([^|]+)|(.+)$')
  if dev then
    local mk = P .. ':d' .. dev .. ':m:' .. pipe
    local v = redis.call('HGET', mk, sess)
    if v then
      redis.call('HDEL', mk, sess)
      local ak = P .. ':d' .. dev .. ':active'
      if redis.call('HINCRBY', ak, pipe, -1) <= 0 then redis.call('HDEL', ak, pipe) end
      if string.sub(pipe, 1, 6) == 'track_' then table.insert(out, {'m', dev, pipe, v}) end
    end
    return
  end
  local udev, user, usess = string.match(e, '^u|(%-?%d+)|(%d+)|(.+)$')
  if udev then
    local ck = P .. ':d' .. udev .. ':c:' .. user
    if redis.call('HDEL', ck, usess) == 1 and redis.call('HLEN', ck) == 0 then
      redis.call('HSET', P .. ':d' .. udev .. ':ut', user, now)
      table.insert(out, {'u', udev, user, ''})
    end
  end
end
`

// scriptReap removes every entry of a node whose liveness key expired (or
// of this node at start-up and shutdown, with force).
//
//	ARGV: prefix, node, now, force ("1")
//	returns the events (see luaDropEntry)
var scriptReap = rueidis.NewLuaScript(luaDropEntry + `
local P = ARGV[1]
local nk = P .. ':node:' .. ARGV[2]
if ARGV[4] ~= '1' and redis.call('EXISTS', nk) == 1 then return {} end
local idx = nk .. ':idx'
local out = {}
for _, e in ipairs(redis.call('SMEMBERS', idx)) do drop(P, e, ARGV[3], out) end
redis.call('DEL', idx)
if ARGV[4] ~= '1' then redis.call('SREM', P .. ':nodes', ARGV[2]) end
return out
`)

// scriptResyncAdd re-registers a batch of this node's entries (after Redis
// came back, or lost them). Entries already present change nothing.
//
//	ARGV: prefix, node, then pairs (index entry, member or "")
//	returns events: {'s', dev, pipe, member} for a new member of a track_*
//	pipe, {'o', dev, user, {queue entries}} for a user who is online again
//	(users_time 0, the offline queue taken)
var scriptResyncAdd = rueidis.NewLuaScript(`
local P = ARGV[1]
local idx = P .. ':node:' .. ARGV[2] .. ':idx'
local tmp = idx .. ':sync'
local out = {}
for i = 3, #ARGV - 1, 2 do
  local e, v = ARGV[i], ARGV[i + 1]
  redis.call('SADD', tmp, e)
  redis.call('SADD', idx, e)
  local dev, pipe, sess = string.match(e, '^m|(%-?%d+)|([^|]+)|(.+)$')
  if dev then
    if redis.call('HSET', P .. ':d' .. dev .. ':m:' .. pipe, sess, v) == 1 then
      redis.call('HINCRBY', P .. ':d' .. dev .. ':active', pipe, 1)
      if string.sub(pipe, 1, 6) == 'track_' then table.insert(out, {'s', dev, pipe, v}) end
    end
  else
    local udev, user, usess = string.match(e, '^u|(%-?%d+)|(%d+)|(.+)$')
    if udev then
      local ck = P .. ':d' .. udev .. ':c:' .. user
      local n = redis.call('HLEN', ck)
      if redis.call('HSET', ck, usess, ARGV[2]) == 1 and n == 0 then
        redis.call('HSET', P .. ':d' .. udev .. ':ut', user, 0)
        local qk = P .. ':d' .. udev .. ':q:' .. user
        local q = redis.call('LRANGE', qk, 0, -1)
        redis.call('DEL', qk)
        redis.call('SREM', P .. ':d' .. udev .. ':qusers', user)
        table.insert(out, {'o', udev, user, q})
      end
    end
  end
end
return out
`)

// scriptResyncEnd removes this node's entries that the resync did not
// re-register (connections that ended while Redis was out of reach).
//
//	ARGV: prefix, node, now
//	returns the events (see luaDropEntry)
var scriptResyncEnd = rueidis.NewLuaScript(luaDropEntry + `
local P = ARGV[1]
local idx = P .. ':node:' .. ARGV[2] .. ':idx'
local tmp = idx .. ':sync'
local out = {}
for _, e in ipairs(redis.call('SDIFF', idx, tmp)) do
  drop(P, e, ARGV[3], out)
  redis.call('SREM', idx, e)
end
redis.call('DEL', tmp)
return out
`)

// scriptClearQueues removes a user's queue, or (user "0") every queue of the
// tenant.
//
//	KEYS: queued-users set
//	ARGV: queue key prefix (the user id completes it), user
//	returns the number of messages removed
var scriptClearQueues = rueidis.NewLuaScript(`
local users = {ARGV[2]}
if ARGV[2] == '0' then users = redis.call('SMEMBERS', KEYS[1]) end
local n = 0
for _, u in ipairs(users) do
  local k = ARGV[1] .. u
  n = n + redis.call('LLEN', k)
  redis.call('DEL', k)
  redis.call('SREM', KEYS[1], u)
end
return n
`)
