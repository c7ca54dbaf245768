//! The store-and-notify script: one call stores a message in its channel's
//! stream and announces it, atomically, so no node can see a message that
//! history lacks, or the reverse.
//!
//! KEYS: the stream, the last-id key, the channel's dropped-through key.
//! ARGV: history size, history age (ms), data, event (or empty), ext (or
//! empty), the notify channel, the channel, the announce command (`PUBLISH`
//! on one Redis, `SPUBLISH` on a Redis Cluster), and the wildcard feed
//! (`keys::WILD`, Redis Cluster only, for channels an engine pattern can
//! take in; else empty), which gets the same announcement by a classic
//! `PUBLISH`. Returns the entry id.
//!
//! The id: the time in ms and a sequence, above the last id in the last-id
//! key (`halley:lastid` on one Redis, so ids increase across channels; the
//! channel's own `halley:l:{ch}` on a cluster, whose scripts may touch one
//! slot only) and above the stream's own last entry (so XADD accepts it
//! even if the last-id key was lost).

pub const STORE: &str = r#"
local function parse(id)
  local a, b = string.match(id or '', '^(%d+)-(%d+)$')
  if a then return tonumber(a), tonumber(b) end
  return 0, -1
end
local function later(x, y)
  if not x then return y end
  if not y then return x end
  local xa, xb = parse(x)
  local ya, yb = parse(y)
  if ya > xa or (ya == xa and yb > xb) then return y end
  return x
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lms, lseq = parse(redis.call('GET', KEYS[2]))
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last then
  local sms, sseq = parse(last[1])
  if sms > lms or (sms == lms and sseq > lseq) then lms, lseq = sms, sseq end
end
local id
if ms > lms then
  id = string.format('%.0f-0', ms)
else
  id = string.format('%.0f-%.0f', lms, lseq + 1)
end
-- What the trims below drop, newest first: a later resume from before it
-- is told of the gap (KEYS[3]).
local size = tonumber(ARGV[1])
local dropped = nil
local len = redis.call('XLEN', KEYS[1])
if len >= size then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - size + 1)
  if old[#old] then dropped = old[#old][1] end
end
local fields = {'d', ARGV[3]}
if ARGV[4] ~= '' then table.insert(fields, 'e'); table.insert(fields, ARGV[4]) end
if ARGV[5] ~= '' then table.insert(fields, 'x'); table.insert(fields, ARGV[5]) end
redis.call('XADD', KEYS[1], 'MAXLEN', size, id, unpack(fields))
local age = tonumber(ARGV[2])
if age > 0 then
  local minid = string.format('%.0f', ms - age)
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. minid, '-', 'COUNT', 1)[1]
  if old then dropped = later(dropped, old[1]) end
  redis.call('XTRIM', KEYS[1], 'MINID', minid)
end
if dropped then redis.call('SET', KEYS[3], later(redis.call('GET', KEYS[3]) or nil, dropped)) end
redis.call('SET', KEYS[2], id)
local announcement = cjson.encode({id = id, c = ARGV[7], d = ARGV[3], e = ARGV[4], x = ARGV[5]})
redis.call(ARGV[8], ARGV[6], announcement)
if ARGV[9] and ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], announcement) end
return id
"#;

/// Empties a channel's stream (recording its last id as dropped, so a
/// resume from before reports a gap) and tells every node.
/// KEYS: the stream, the dropped-through key. ARGV: the control channel,
/// the channel.
pub const DELETE: &str = r#"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  redis.call('SET', KEYS[2], last[1])
end
redis.call('PUBLISH', ARGV[1], 'del ' .. ARGV[2])
return last and 1 or 0
"#;

/// History of one channel: every entry after an id (exclusive), or the last
/// N; and the newest id dropped from the stream (trimmed by size or age, or
/// deleted), so the caller can tell a gap. KEYS: the stream, the
/// dropped-through key. ARGV: `after` and an id, or `last` and N.
pub const FETCH: &str = r#"
local dropped = redis.call('GET', KEYS[2]) or '0-0'
if redis.call('EXISTS', KEYS[1]) == 0 then return {{}, dropped} end
local entries
if ARGV[1] == 'after' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+')
else
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[2])
end
return {entries, dropped}
"#;

/// The end of `COUNT` and `COUNT_CLUSTER`, once: with `total` summed, whether
/// the stream (KEYS[1]) exists, its length and last id.
macro_rules! stream_facts {
    () => {
        r#"
local exists = redis.call('EXISTS', KEYS[1])
local len, last = 0, ''
if exists == 1 then
  len = redis.call('XLEN', KEYS[1])
  local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  if e then last = e[1] end
end
return {total, exists, len, last}
"#
    };
}

/// A channel's cluster-wide facts: subscribers summed over live nodes,
/// whether its stream exists, its length and last id. KEYS: the stream, the
/// node set. ARGV: the oldest heartbeat (ms) still alive, the channel.
pub const COUNT: &str = concat!(
    r#"
local total = 0
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')) do
  local c = redis.call('HGET', 'halley:n:' .. n, ARGV[2])
  if c then total = total + tonumber(c) end
end
"#,
    stream_facts!()
);

/// Redis Cluster's `COUNT`: a script may read only its channel's slot, so
/// each node writes its count of the channel into the channel's own hash
/// (`keys::channel_counts`, field = node, value = `"<count> <ms>"`) with
/// each heartbeat; fields older than the oldest live heartbeat are ignored.
/// KEYS: the stream, the counts hash. ARGV: the oldest heartbeat (ms)
/// still alive.
pub const COUNT_CLUSTER: &str = concat!(
    r#"
local total = 0
local alive = tonumber(ARGV[1])
local fields = redis.call('HGETALL', KEYS[2])
for i = 2, #fields, 2 do
  local c, ms = string.match(fields[i], '^(%d+) (%d+)$')
  if c and tonumber(ms) >= alive then total = total + tonumber(c) end
end
"#,
    stream_facts!()
);
