-- tapgate: decide one device message atomically.
--
-- Mirrors tapgate_protocol::rules::decide (the reference model it is tested against). Everything a
-- decision reads and writes happens in this one script: idempotency record, pass, deny list, sale,
-- counters and event stream. No read-then-write crosses a round trip.
--
-- KEYS[1] seen key (stored result for redeliveries)
-- KEYS[2] sale key of the terminal (unused for gates)
-- KEYS[3] event stream               KEYS[4] counters:issued
-- KEYS[5] counters:entries           KEYS[6] counters:denied
-- KEYS[7] counters:device:{device}
-- KEYS[8] card pass   KEYS[9] card blocked   KEYS[10] card recent   (taps only)
--
-- ARGV: op (gate|terminal|button), now_ms, device, device_kind, id, card ('' for buttons),
--       selected pass type ('' for taps), two_hour_ms, sale_timeout_ms, seen_ttl_s,
--       stream_maxlen, recent_len
--
-- Returns {replayed (0|1), result JSON {"decision": {...}, "events": [{"seq": id, "event": {...}}]}}.

local op, now = ARGV[1], tonumber(ARGV[2])
local device, kind, id, card, chosen = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local two_hour, sale_timeout = tonumber(ARGV[8]), tonumber(ARGV[9])
local seen_ttl, maxlen, recent_len = ARGV[10], ARGV[11], tonumber(ARGV[12])
-- Expired passes and sales are judged by their stored deadline against `now`; Redis expiry is only
-- garbage collection, set this much later so it never decides anything.
local GC_MS = 60000

local stored = redis.call('GET', KEYS[1])
if stored then
  return {1, stored}
end

local function int(n)
  return string.format('%d', n)
end

local events = {}

local function finish(decision)
  decision.id = id
  local result = {decision = decision}
  if #events > 0 then
    result.events = events
  end
  local json = cjson.encode(result)
  redis.call('SET', KEYS[1], json, 'EX', seen_ttl)
  return {0, json}
end

local function emit(name, pass_info, reason)
  local e = {event = name, time = now, device = device, device_kind = kind, id = id}
  if card ~= '' then e.card = card end
  if pass_info then e.pass = pass_info end
  if reason then e.reason = reason end
  local json = cjson.encode(e)
  local seq = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'event', json)
  if card ~= '' then
    redis.call('LPUSH', KEYS[10], json)
    redis.call('LTRIM', KEYS[10], 0, recent_len - 1)
  end
  events[#events + 1] = {seq = seq, event = e}
end

local function load_pass()
  local f = redis.call('HMGET', KEYS[8], 'type', 'trips', 'expires_at', 'issued_at')
  if not f[1] then return nil end
  return {type = f[1], trips = tonumber(f[2]) or 0, expires_at = tonumber(f[3]),
          issued_at = tonumber(f[4]) or 0}
end

local function live(p)
  return p.expires_at == nil or now < p.expires_at
end

-- The card's pass if it can still be used; an expired one is removed.
local function live_pass()
  local p = load_pass()
  if p and not live(p) then
    redis.call('DEL', KEYS[8])
    return nil
  end
  return p
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
  redis.call('DEL', KEYS[8])
  redis.call('HSET', KEYS[8], 'type', p.type, 'trips', int(p.trips), 'issued_at', int(p.issued_at))
  if p.expires_at then
    redis.call('HSET', KEYS[8], 'expires_at', int(p.expires_at))
    redis.call('PEXPIRE', KEYS[8], int(p.expires_at - now + GC_MS))
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
  return {card = f[1], selected = selected}
end

local function save_sale(sale_card, selected)
  redis.call('HSET', KEYS[2], 'card', sale_card, 'selected', selected or '',
    'expires_at', int(now + sale_timeout))
  redis.call('PEXPIRE', KEYS[2], int(sale_timeout + GC_MS))
end

local function deny(reason)
  redis.call('HINCRBY', KEYS[6], reason, 1)
  redis.call('HINCRBY', KEYS[7], 'denied', 1)
  emit('pass-denied', nil, reason)
  return finish({outcome = 'denied', reason = reason})
end

local function blocked()
  return redis.call('EXISTS', KEYS[9]) == 1
end

if op == 'gate' then
  if blocked() then return deny('blocked') end
  local p = load_pass()
  if not p then return deny('no_pass') end
  if not live(p) then
    redis.call('DEL', KEYS[8])
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
    redis.call('DEL', KEYS[8])
  elseif p.type == 'TEN_TRIP' or activated then
    save_pass(p)
  end
  redis.call('HINCRBY', KEYS[5], p.type, 1)
  redis.call('HINCRBY', KEYS[7], 'granted', 1)
  if activated then emit('pass-activated', i) end
  emit('pass-used', i)
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
    local p = live_pass()
    if p then
      return finish({outcome = 'already_has_pass', pass = info(p)})
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
  local p = live_pass()
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
