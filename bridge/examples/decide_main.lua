-- tapgate: decide one device message atomically.
--
-- Mirrors tapgate_protocol::rules::decide_timed (the reference model it is tested against).
-- Everything a decision reads and writes happens in this one script: idempotency record, pass, deny
-- list, sale, counters and event stream. No read-then-write crosses a round trip.
--
-- KEYS[1] seen key (stored result for redeliveries)
-- KEYS[2] sale key of the terminal (unused for gates)
-- KEYS[3] event stream               KEYS[4] counters:issued
-- KEYS[5] counters:entries           KEYS[6] counters:denied
-- KEYS[7] counters:device:{device}   KEYS[8] device presence (read: clock_skew_ms)
-- KEYS[9] counters:unpaid            KEYS[10] counters:stale
-- KEYS[11] card pass   KEYS[12] card blocked   KEYS[13] card recent   (taps only)
--
-- ARGV: op (gate|terminal|button), now_ms, device, device_kind, id, card ('' for buttons),
--       selected pass type ('' for taps), two_hour_ms, sale_timeout_ms, seen_ttl_s,
--       stream_maxlen, recent_len, recent_ttl_s, device_ttl_s,
--       stamp time ('' without a stamp), stamp mode ('' without), decision_window_ms,
--       max_future_ms, max_skew_ms
--
-- Returns {0, result JSON} for a new decision, {1, stored result JSON} for a redelivery of the
-- same content, {2, ''} for an id already used with other content, {3, reason} for a message
-- whose time is refused (time_in_future, offline_not_allowed). The last two change nothing. The
-- result JSON is {"decision": {...}, "events": [{"seq": id, "event": {...}}]}.
--
-- The seen record is "<fingerprint>\n<result JSON>", the fingerprint being "op:card:pass" of
-- the message, and ":time:mode" after it for a stamped one (at most ~80 bytes). A record from
-- before fingerprints (starting with '{') is replayed as it is.

local op, now = ARGV[1], tonumber(ARGV[2])
local device, kind, id, card, chosen = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local two_hour, sale_timeout = tonumber(ARGV[8]), tonumber(ARGV[9])
local seen_ttl, maxlen, recent_len = ARGV[10], ARGV[11], tonumber(ARGV[12])
local recent_ttl, device_ttl = ARGV[13], ARGV[14]
local stamp_time, mode = tonumber(ARGV[15]), ARGV[16]
local window, max_future, max_skew = tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19])
-- Expired passes and sales are judged by their stored deadline against `now`; Redis expiry is only
-- garbage collection, set this much later so it never decides anything.
local GC_MS = 60000
-- The bridge's clock: events and records are stamped with it, whatever time the rules run at.
local bridge_now = now

local fingerprint = op .. ':' .. card .. ':' .. chosen
if stamp_time then
  fingerprint = fingerprint .. ':' .. ARGV[15] .. ':' .. mode
end
local stored = redis.call('GET', KEYS[1])
if stored then
  if string.sub(stored, 1, 1) == '{' then
    return {1, stored}
  end
  local nl = string.find(stored, '\n', 1, true)
  if nl and string.sub(stored, 1, nl - 1) == fingerprint then
    return {1, string.sub(stored, nl + 1)}
  end
  if not nl then
    -- Neither format: hand it back so the bridge refuses it as unreadable.
    return {1, stored}
  end
  return {2, ''}
end

local PASS_TYPES = {SINGLE_USE = true, TEN_TRIP = true, TWO_HOUR = true}
local OUTCOMES = {granted = true, denied = true, select_pass = true, already_has_pass = true,
  tap_to_confirm = true, pass_issued = true, card_mismatch = true, tap_card_first = true,
  stale = true, entry_settled = true, unpaid_entry = true}
local DENY_REASONS = {no_pass = true, expired = true, blocked = true, corrupt_pass = true}

local function int(n)
  return string.format('%d', n)
end

local events = {}

-- Whether a decision is one the bridge can read; checked before it is stored for redeliveries.
local function valid_decision(d)
  if not OUTCOMES[d.outcome] then return false end
  if d.pass and not PASS_TYPES[d.pass.type] then return false end
  if (d.outcome == 'denied' or d.outcome == 'unpaid_entry') and not DENY_REASONS[d.reason] then
    return false
  end
  if d.outcome == 'tap_to_confirm' and not PASS_TYPES[d.selected] then return false end
  return true
end

local function finish(decision)
  decision.id = id
  if not valid_decision(decision) then
    return redis.error_reply('tapgate: refusing to store an unreadable decision for ' .. op)
  end
  local result = {decision = decision}
  if #events > 0 then
    result.events = events
  end
  local json = cjson.encode(result)
  redis.call('SET', KEYS[1], fingerprint .. '\n' .. json, 'EX', seen_ttl)
  redis.call('EXPIRE', KEYS[7], device_ttl)
  return {0, json}
end

-- When the message happened on the bridge's clock, and which clock that is; set below.
local at, clock = now, 'bridge'

local function emit(name, pass_info, reason)
  local e = {event = name, time = bridge_now, device = device, device_kind = kind, id = id}
  if card ~= '' then e.card = card end
  if pass_info then e.pass = pass_info end
  if reason then e.reason = reason end
  if stamp_time then
    e.tap_time = at
    e.mode = mode
    e.clock = clock
  end
  local json = cjson.encode(e)
  local seq = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'event', json)
  if card ~= '' then
    redis.call('LPUSH', KEYS[13], json)
    redis.call('LTRIM', KEYS[13], 0, recent_len - 1)
    redis.call('EXPIRE', KEYS[13], recent_ttl)
  end
  events[#events + 1] = {seq = seq, event = e}
end

-- An integer field: nil when absent, false when present but not a non-negative integer.
local function int_field(v)
  if not v then return nil end
  local n = tonumber(v)
  if not n or n < 0 or n ~= math.floor(n) then return false end
  return n
end

-- The card's pass: nil when there is none, or (nil, true) when the record cannot be read (an
-- unknown type or a garbled field). A corrupt record is never granted, sold over or rewritten.
local function load_pass()
  if redis.call('EXISTS', KEYS[11]) == 0 then return nil end
  local f = redis.call('HMGET', KEYS[11], 'type', 'trips', 'expires_at', 'issued_at')
  local trips, expires_at, issued_at = int_field(f[2]), int_field(f[3]), int_field(f[4])
  if not PASS_TYPES[f[1]] or trips == false or expires_at == false or issued_at == false then
    return nil, true
  end
  if f[1] == 'TEN_TRIP' and (trips == nil or trips > 10) then return nil, true end
  return {type = f[1], trips = trips or 0, expires_at = expires_at, issued_at = issued_at or 0}
end

local function live(p)
  return p.expires_at == nil or now < p.expires_at
end

-- The card's pass if it can still be used; an expired one is removed. Second value: corrupt.
local function live_pass()
  local p, corrupt = load_pass()
  if p and not live(p) then
    redis.call('DEL', KEYS[11])
    return nil
  end
  return p, corrupt
end

local function info(p)
  local i = {type = p.type}
  if p.type == 'TEN_TRIP' then i.trips_remaining = p.trips end
  if p.expires_at then
    i.expires_at = p.expires_at
    i.remaining_ms = math.max(p.expires_at - now, 0)
  end
  return i
end

local function save_pass(p)
  redis.call('DEL', KEYS[11])
  redis.call('HSET', KEYS[11], 'type', p.type, 'trips', int(p.trips), 'issued_at', int(p.issued_at))
  if p.expires_at then
    redis.call('HSET', KEYS[11], 'expires_at', int(p.expires_at))
    redis.call('PEXPIRE', KEYS[11], int(math.max(p.expires_at - bridge_now, 0) + GC_MS))
  end
end

local function load_sale()
  local f = redis.call('HMGET', KEYS[2], 'card', 'selected', 'expires_at')
  if not f[1] then return nil end
  local expires_at = tonumber(f[3]) or 0
  if now > expires_at then
    redis.call('DEL', KEYS[2])
    return nil
  end
  local selected = f[2]
  if selected == '' then selected = nil end
  -- Card ids are upper case; a sale started before that rule compares the same way.
  return {card = string.upper(f[1]), selected = selected}
end

local function save_sale(sale_card, selected)
  redis.call('HSET', KEYS[2], 'card', sale_card, 'selected', selected or '',
    'expires_at', int(now + sale_timeout))
  redis.call('PEXPIRE', KEYS[2], int(sale_timeout + GC_MS))
end

local function deny(reason)
  if mode == 'offline' then
    -- The rider is through already: record what could not be charged, never a late denial.
    redis.call('HINCRBY', KEYS[9], reason, 1)
    redis.call('HINCRBY', KEYS[7], 'unpaid', 1)
    emit('unpaid-entry', nil, reason)
    return finish({outcome = 'unpaid_entry', reason = reason})
  end
  redis.call('HINCRBY', KEYS[6], reason, 1)
  redis.call('HINCRBY', KEYS[7], 'denied', 1)
  emit('pass-denied', nil, reason)
  return finish({outcome = 'denied', reason = reason})
end

local function blocked()
  return redis.call('EXISTS', KEYS[12]) == 1
end

-- Time (rules::resolve_time): the stamp less the device's measured lead when its clock runs
-- ahead ('bridge' time once that lead is flagged); as sent when it runs behind (a heartbeat read
-- late after an outage looks slow, and correcting by it would make late taps look fresh); the
-- bridge's clock without a stamp.
if stamp_time then
  local skew = tonumber(redis.call('HGET', KEYS[8], 'clock_skew_ms')) or 0
  local lead = math.max(skew, 0)
  at, clock = math.max(stamp_time - lead, 0), 'device'
  if lead > max_skew then clock = 'bridge' end
  if at > now + max_future then
    return {3, 'time_in_future'}
  end
  if mode == 'offline' and op ~= 'gate' then
    return {3, 'offline_not_allowed'}
  end
  if mode == 'offline' then
    -- Settled at the time it happened: the rules run at `at`.
    now = at
  elseif now - at > window then
    -- The device gave up waiting: nothing decided, nothing charged.
    redis.call('HINCRBY', KEYS[10], kind, 1)
    redis.call('HINCRBY', KEYS[7], 'stale', 1)
    emit('tap-stale', nil, 'stale')
    return finish({outcome = 'stale'})
  end
end

if op == 'gate' then
  if blocked() then return deny('blocked') end
  local p, corrupt = load_pass()
  if corrupt then return deny('corrupt_pass') end
  if not p then return deny('no_pass') end
  if not live(p) then
    redis.call('DEL', KEYS[11])
    return deny('expired')
  end
  local activated = false
  if p.type == 'TEN_TRIP' then
    p.trips = math.max(p.trips - 1, 0)
  elseif p.type == 'TWO_HOUR' and not p.expires_at then
    p.expires_at = now + two_hour
    activated = true
  end
  local i = info(p)
  if p.type == 'SINGLE_USE' or (p.type == 'TEN_TRIP' and p.trips == 0) then
    redis.call('DEL', KEYS[11])
  elseif p.type == 'TEN_TRIP' or activated then
    save_pass(p)
  end
  redis.call('HINCRBY', KEYS[5], p.type, 1)
  redis.call('HINCRBY', KEYS[7], 'granted', 1)
  if activated then emit('pass-activated', i) end
  emit('pass-used', i)
  if mode == 'offline' then
    return finish({outcome = 'entry_settled', pass = i})
  end
  return finish({outcome = 'granted', pass = i})
end

if op == 'terminal' then
  local sale = load_sale()
  if sale and sale.selected then
    redis.call('DEL', KEYS[2])
    if sale.card ~= card then
      return finish({outcome = 'card_mismatch'})
    end
    if blocked() then return deny('blocked') end
    local p, corrupt = live_pass()
    if corrupt then return deny('corrupt_pass') end
    if p then
      return finish({outcome = 'already_has_pass', pass = info(p)})
    end
    if not PASS_TYPES[sale.selected] then
      return redis.error_reply('tapgate: sale holds an unknown pass type')
    end
    p = {type = sale.selected, trips = 0, issued_at = now}
    if p.type == 'TEN_TRIP' then p.trips = 10 end
    save_pass(p)
    local i = info(p)
    redis.call('HINCRBY', KEYS[4], p.type, 1)
    redis.call('HINCRBY', KEYS[7], 'issued', 1)
    emit('pass-issued', i)
    return finish({outcome = 'pass_issued', pass = i})
  end
  redis.call('DEL', KEYS[2])
  if blocked() then return deny('blocked') end
  local p, corrupt = live_pass()
  if corrupt then return deny('corrupt_pass') end
  if p then
    return finish({outcome = 'already_has_pass', pass = info(p)})
  end
  save_sale(card, nil)
  return finish({outcome = 'select_pass'})
end

if op == 'button' then
  local sale = load_sale()
  if not sale then
    return finish({outcome = 'tap_card_first'})
  end
  save_sale(sale.card, chosen)
  return finish({outcome = 'tap_to_confirm', selected = chosen})
end

return redis.error_reply('tapgate: unknown op ' .. tostring(op))
