-- tapgate: decide one device message atomically.
--
-- Mirrors tapgate_protocol::rules::decide_timed (the reference model it is tested against).
-- Everything a decision reads and writes happens in this one call: idempotency record, pass, deny
-- list, sale, counters and event stream. No read-then-write crosses a round trip.
--
-- This file is a chunk of the bridge's function library (see library.rs): it runs once when the
-- library is loaded and returns the function registered as the decide function, so its tables
-- and helpers are built once, not on every call. Per-call values live in the locals below,
-- assigned at the start of each call (a function runs alone, start to end).
--
-- Keys, by position. Every message: [1] its seen key (stored result for redeliveries), [2] the
-- event stream, [3] counters:device:{device}, [4] device presence (read: clock_skew_ms),
-- [5] counters:stale, [6] counters:denied; then, by op:
--   gate tap:      [7] card pass, [8] card blocked, [9] card recent, [10] counters:entries,
--                  [11] counters:unpaid; with pay as you go (args[10]) [12] the card's wallet and
--                  [13] the revenue of the entry's service day (args[11]); last, the seen key of
--                  the waiting tap an offline entry or a retap replaces and its settled key
--                  (only with args[9] not '')
--   terminal tap:  [7] card pass, [8] card blocked, [9] card recent, [10] counters:issued,
--                  [11] sale key of the terminal, [12] revenue of the current service day
--                  (args[10] names that day), [13] the card's wallet (a top-up adds to it)
--   button:        [7] sale key of the terminal
-- Only the keys a message can touch are passed: each costs Redis a string and a table slot.
--
-- Args: [1] op (gate|terminal|button; the device kind follows from it: gate taps come from gates,
-- terminal taps and buttons from terminals), [2] now_ms, [3] device, [4] id, [5] the card for a
-- tap, the selected product for a button, [6] stamp time ('' without a stamp), [7] stamp mode
-- ('' without), [8] settings: "legacy_period_ms sale_timeout_ms seen_ttl_s stream_maxlen
-- recent_len recent_ttl_s device_ttl_s decision_window_ms max_future_ms max_skew_ms retap_ms
-- max_offline_age_ms"
-- (parsed once while unchanged), [9] by op: gate, the id of the waiting tap an offline entry or a
-- retap replaces ('' or absent otherwise; see settle_replaced), and with pay as you go [10] its
-- terms, "fare daily_cap weekly_cap minimum_balance currency" (an absent cap is '-';
-- tapgate_protocol::payg::Payg::to_words), and [11] the fare day of the time the rules run at
-- (the bridge's now; an offline entry's stamp), "day week keep_from starts_at ends_at"
-- (tapgate_protocol::payg::FareDay::to_words); button, the product's terms from the
-- bridge's fare catalogue, "validity trips duration_ms price currency" (tapgate_protocol::fares::
-- Terms::to_words) and the catalogue's version as a sixth word; terminal tap, when the current
-- service day ends (Unix ms: a service_day product sold now is valid until then), [10] that
-- day as YYYY-MM-DD, and [11] '1' when the catalogue sells top-ups (a card with a pass may then
-- start a sale, to top up).
--
-- Pay as you go (tapgate_protocol::payg): a gate entry with no usable pass is charged from the
-- card's wallet: the fare, cut to what is left of the day's and the week's caps (0 once capped;
-- nothing on a day older than the wallet's kept_from); a balance that would fall below
-- minimum_balance is denied insufficient_funds and nothing changes. The wallet hash keeps
-- balance, topped_up and charged in all (topped_up = balance + charged, always) and charged per
-- service day (day:YYYY-MM-DD) and week (week:<its Monday>); when a card is first charged in a
-- week, totals before keep_from are dropped. A top_up product sold at a terminal adds its price
-- to the balance. Both count on their service day's revenue (fares, fare_amount; top_ups,
-- topped_up, and a top-up's sale in sales and amount like any sale) in the same call.
--
-- Products are data: the script never names one. A pass record keeps the terms it was sold on in
-- one field, `terms`, the words the bridge passed for the sale ("validity trips duration price
-- currency version"; a gate reads them with one pattern, and only what it uses becomes a
-- number), so a catalogue change never alters a pass sold before it; and what an operator's void
-- needs: the terminal that sold it, the service day its revenue was counted on, and when it was
-- first used (never, for a pass that may be voided). Records written earlier are still read
-- (tapgate_protocol::pass_record): terms as fields of their own (validity, duration, price ...),
-- or no terms at all (type SINGLE_USE, TEN_TRIP or TWO_HOUR, read on the terms those types had, a
-- TWO_HOUR's period being legacy_period_ms). An entry changes only a record's trips, expiry and
-- first use, whatever its layout.

-- Returns one string. For a new decision, its seen record (below), "<fingerprint>\n<result>":
-- the record stored and the reply are one string, made once (a fingerprint starts with its op,
-- never a digit). Otherwise a digit and what follows it: '1' and the stored result for a
-- redelivery of the same content, '2' alone for an id already used with other content, '3' and
-- the reason for a message whose time is refused (time_in_future, offline_not_allowed,
-- time_too_old), '4' and a time (Unix ms) when an entry paid as you go happened outside the fare
-- day the bridge passed (an offline entry whose stamp the device's lead moved across a
-- service-day boundary): the bridge calls again with that time's fare day. The last three change
-- nothing. (A string, not a {code, text} table: Redis converts a table reply with a dozen
-- lookups, a string with none.)
--
-- The result is one line of tab-separated fields (store/result.rs reads it):
--   outcome, reason, selected, pass product, trips left (trips products only), expires_at, time
--   (the bridge's clock), tap_time, clock ('' for both without a stamp), price and currency (of a
--   chosen or sold product or a top-up, or what an entry paid as you go was charged, else ''),
--   '=' then pay as you go's "charged,balance" (either part empty when it has none), then per
--   event appended to the stream: its kind, stream id and reason (for a pass-issued, topped-up or
--   fare-charged event, which have none, the service day it was counted on).
-- An event carries the decision's pass when its kind is one with a pass in the topic
-- (pass-issued, pass-used, pass-activated), and the decision's device, id, card and mode.
--
-- Stream entries: the fields of tapgate_protocol::stream::DECIDE_FIELDS, always all of them and
-- in that order, so Redis keeps their names once per stream node. The card's recent list holds
-- the entries' stream ids, newest first: readers use the first recent_len; it is trimmed back to
-- that once it holds twice as many, and expires recent_ttl_s after its last event (to within a
-- sixteenth of that: see "Upkeep" below). The stream is capped at about stream_maxlen entries.
--
-- The seen record is "<fingerprint>\n<result>" (fingerprint_of). A record from before this layout
-- (JSON, starting with '{' or after the newline) is handed back as it is; the bridge reads both.
--
-- How long the seen record lives: only as long as a redelivery can still change something. A
-- waiting message (stamp mode 'online') redelivered once its time is older than the decision window
-- charges nothing, so its record is kept until then: the stamp's lead over the bridge's clock (if
-- any) plus the decision window plus max_future_ms, the latter covering bridges whose clocks
-- differ by up to that much; a terminal's message (tap or button) the sale timeout longer, as it
-- may have started or changed a sale, which leaves no event, and a sale outlives the window.
-- After that, a redelivery is answered from the card's history if the first delivery left events
-- there (decided_before), else 'stale' (a sale it touched has expired by then). An offline
-- entry, or a message without a stamp, has no such bound and is kept for seen_ttl_s
-- (--idempotency-ttl).
--
-- How long a card's history lives. The recent list (and the `settled` record of a granted tap)
-- of a card that has something, a pass record (even an expired or unreadable one), a wallet or a
-- block, lives recent_ttl_s (--card-recent-ttl, 30 days) after its last event: an operator reads
-- it. A card this call found with nothing of these (a denied no_pass or insufficient_funds, an
-- unpaid offline entry, a stale tap; the flood of random cards a stolen gate secret can send) gets
-- no more than a redelivery of its message could still need: seen_ttl_s (--idempotency-ttl, 24 h;
-- recent_ttl_s if shorter), for decided_before to answer a waiting tap redelivered late as first
-- decided. Only ever lengthened (EXPIRE ... GT): a card that had something keeps what its last
-- event of substance set, and the first event once a card gets something (a sale, a top-up, a
-- charge, a tap after a block) sets recent_ttl_s. Nothing else a tap of such a card writes outlives
-- seen_ttl_s: its seen record (above), counters, and its stream entry (capped by stream_maxlen).
-- A key per message rather than one hash per device: each record needs its own expiry, and
-- per-field expiry (HEXPIRE) needs Redis 7.4; with records living seconds, few exist at a time.

-- Library functions as locals (upvalues), bound on the first call: a global and a table lookup
-- on every use add up over a call, and none of them can be reached while the library loads.
-- `redis.call` is taken afresh at the start of every call.
local tonumber, tostring, format, sub, find, match, upper, max, min, call
-- The texts of the small integers (trips left, counts), made once, when bound: a sprintf costs
-- more than the rest of an entry's arithmetic.
local SMALL = {}

local function bind()
  tonumber, tostring, format = _G.tonumber, _G.tostring, _G.string.format
  sub, find, match, upper = _G.string.sub, _G.string.find, _G.string.match, _G.string.upper
  max, min = _G.math.max, _G.math.min
  for i = 0, 255 do SMALL[i] = format('%d', i) end
end

local VALIDITIES = {single = true, trips = true, period = true, service_day = true}
-- What a product may be sold as: a pass, or a top-up (never stored as a pass).
local TERMS = {single = true, trips = true, period = true, service_day = true, top_up = true}
-- Records from before terms were stored: their type's terms (a TWO_HOUR's period is the
-- settings' legacy_period_ms).
local LEGACY = {SINGLE_USE = 'single', TEN_TRIP = 'trips', TWO_HOUR = 'period'}
local DENY_REASONS = {no_pass = true, expired = true, blocked = true, corrupt_pass = true,
  insufficient_funds = true}
-- Expired passes and sales are judged by their stored deadline against `now`; Redis expiry is only
-- garbage collection, set this much later so it never decides anything.
local GC_MS = 60000

-- Settings, parsed when the settings argument changes. Those only ever handed to Redis are kept
-- as text: a Lua number passed to redis.call is formatted as a float ("%.17g") on every call,
-- the costliest step of a call after the commands themselves, so everything handed to Redis
-- below is a string (`int` formats an integer once, where it is computed).
local settings_text
local legacy_period, sale_timeout, seen_ttl, maxlen, recent_len, recent_ttl, device_ttl
local window, max_future, max_skew, retap_ms, max_offline_age
local recent_keep, short_ttl
-- A waiting message's seen record lifetime (see "How long the seen record lives") when its stamp
-- does not lead the bridge's clock, as text: a gate's, and a terminal's.
local waiting_life, terminal_life

-- Upkeep done every so often rather than on every call. It lives in this Redis's Lua VM, not in
-- Redis: a restart, a failover or a library reload starts it afresh, and the work is then done on
-- the first call that needs it (it is replicated as the commands it runs, like every write here).
--
-- The stream is trimmed (MAXLEN ~ stream_maxlen) by one XADD in every TRIM_EVERY rather than by
-- each: trimming on every XADD costs three arguments and a trim check per event. The stream is
-- append-only for this Redis user (docker/redis-users.sh): no XTRIM, only XADD's own. Between
-- trims it holds at most TRIM_EVERY entries more, plus the part of a stream node that approximate
-- trimming leaves.
local TRIM_EVERY = 64
local since_trim = TRIM_EVERY
-- A card's recent list expires recent_ttl_s after its last event of a card that has something
-- (see "How long a card's history lives" above). Renewing that on every event is an EXPIRE per
-- tap; it is renewed instead when the list is new or this VM has not renewed it for a sixteenth
-- of recent_ttl_s, so it expires between 15/16 and all of recent_ttl_s after the card's last
-- event. The short lifetime of a card with nothing is renewed the same way, every sixteenth of
-- it, with EXPIRE ... GT (only ever lengthened: never below what an earlier event of substance
-- set). Renewal times are kept for at most RENEWED_MAX cards (about 100 bytes each; negative for
-- a short renewal), then all forgotten at once: a card not found is renewed, as before.
local RENEWED_MAX = 10000
local renewed, renewed_count, renew_every, short_every = {}, 0, 0, 0

local function load_settings(text)
  local v, t = {}, {}
  for n in string.gmatch(text, '%d+') do
    v[#v + 1], t[#t + 1] = tonumber(n), n
  end
  legacy_period, sale_timeout, seen_ttl, maxlen = v[1], v[2], t[3], t[4]
  recent_len, recent_ttl, device_ttl = v[5], t[6], t[7]
  window, max_future, max_skew, retap_ms, max_offline_age = v[8], v[9], v[10], v[11], v[12]
  recent_keep = tostring(recent_len - 1)
  -- A card with nothing keeps its history as long as a redelivery may come: seen_ttl_s.
  short_ttl = t[3]
  if v[3] > v[6] then short_ttl = t[6] end
  renewed, renewed_count = {}, 0
  waiting_life = format('%d', window + max_future)
  terminal_life = format('%d', window + max_future + sale_timeout)
  renew_every, short_every = v[6] * 1000 / 16, tonumber(short_ttl) * 1000 / 16
  settings_text = text
end

-- This call's message and keys.
local op, now, bridge_now, now_text, device, kind, id, card, chosen, stamp_time, stamp_text, mode
local k_seen, k_stream, k_device, k_presence, k_stale, k_denied
local k_pass, k_blocked, k_recent, k_entries, k_unpaid, k_replaced, k_issued, k_sale, k_revenue
local k_wallet, k_fare_revenue, k_settled
local replaces, chosen_terms, day_end, day_label, top_ups
-- Pay as you go: the terms (parsed when their text changes) and this call's fare day.
local payg, payg_text, payg_terms
local fare_day
local fingerprint, seen_unit, seen_for
-- When the message happened on the bridge's clock, and which clock that is.
local at, clock
-- Events of this call, as the result ends: the first one's kind, stream id and reason (nil
-- without events), and the others', each tab-separated, after them ('' without). Kept apart so
-- that the result line is one concatenation.
local ev_kind, ev_seq, ev_reason, ev_more
-- Whether this call found (or made) something that keeps the card's history for recent_ttl_s: a
-- pass record (even corrupt or expired), a block or a wallet.
local keeps

local function int(n)
  return SMALL[n] or format('%d', n)
end

-- Texts formatted at most once per call (each int() is a sprintf): the decision's time...
local at_string
local function at_text()
  if not at_string then at_string = int(at) end
  return at_string
end

-- ...and a pass's trips left (trips products only, else '') and expiry ('' if none), once the
-- pass is final for this call (after gate() has counted the trip or activated it).
local function pass_texts(p)
  if not p.trips_text then
    p.trips_text = ''
    if p.validity == 'trips' then p.trips_text = int(p.trips) end
  end
  if not p.expires_text then
    p.expires_text = ''
    if p.expires_at then p.expires_text = int(p.expires_at) end
  end
  return p.trips_text, p.expires_text
end

-- Counts one `field` of this device's counters. The hash gets its lifetime when a count starts
-- (a new hash, or one that expired); heartbeats renew it (Store::presence), so it expires with
-- the device without an EXPIRE on every call.
local function count_device(field)
  if call('HINCRBY', k_device, field, '1') == 1 then
    call('EXPIRE', k_device, device_ttl)
  end
end

-- A message's fingerprint: "op:card:pass", ":time:mode" after it for a stamped one, and
-- ":<id>" after that for an offline entry naming the waiting tap it replaces.
local function fingerprint_of(m_op, m_card, m_chosen, m_stamp, m_mode, m_replaces)
  -- One concatenation (one new string) for each shape.
  if m_stamp == '' then
    if m_replaces == '' then return m_op .. ':' .. m_card .. ':' .. m_chosen end
    return m_op .. ':' .. m_card .. ':' .. m_chosen .. ':' .. m_replaces
  end
  if m_replaces == '' then
    return m_op .. ':' .. m_card .. ':' .. m_chosen .. ':' .. m_stamp .. ':' .. m_mode
  end
  return m_op .. ':' .. m_card .. ':' .. m_chosen .. ':' .. m_stamp .. ':' .. m_mode .. ':'
    .. m_replaces
end

-- A seen record: `fp` (a fingerprint), a newline and the result line of this call's
-- decision (its events so far at the end). `price` is the price and currency of a chosen or
-- sold product, "price\tcurrency". `money` is pay as you go's "charged,balance" (see the result
-- layout).
local function record(fp, outcome, reason, selected, p, price, money)
  local ptype, trips, expires = '', '', ''
  if p then ptype, trips, expires = p.type, pass_texts(p) end
  local tap_time, clock_name = '', ''
  if stamp_time then tap_time, clock_name = at_text(), clock end
  if ev_kind then
    return fp .. '\n' .. outcome .. '\t' .. (reason or '') .. '\t' .. (selected or '') .. '\t'
      .. ptype .. '\t' .. trips .. '\t' .. expires .. '\t' .. now_text .. '\t' .. tap_time .. '\t'
      .. clock_name .. '\t' .. (price or '\t') .. '\t=' .. (money or ',') .. '\t' .. ev_kind
      .. '\t' .. ev_seq .. '\t' .. ev_reason .. ev_more
  end
  return fp .. '\n' .. outcome .. '\t' .. (reason or '') .. '\t' .. (selected or '') .. '\t'
    .. ptype .. '\t' .. trips .. '\t' .. expires .. '\t' .. now_text .. '\t' .. tap_time .. '\t'
    .. clock_name .. '\t' .. (price or '\t') .. '\t=' .. (money or ',') .. '\t'
end

-- The decision's seen record, stored for redeliveries and returned as it is (see the reply
-- layout above).
local function finish(outcome, reason, selected, p, price, money)
  if (outcome == 'denied' or outcome == 'unpaid_entry') and not DENY_REASONS[reason] then
    return redis.error_reply('tapgate: refusing to store an unreadable decision for ' .. op)
  end
  local seen = record(fingerprint, outcome, reason, selected, p, price, money)
  call('SET', k_seen, seen, seen_unit, seen_for)
  return seen
end

-- XADD of one entry's fields and values to the stream, trimming it (MAXLEN ~) on one call in
-- every TRIM_EVERY (see "Upkeep" above). The fields pass as arguments, not a table: no table is
-- built per event.
local function append(...)
  since_trim = since_trim + 1
  if since_trim >= TRIM_EVERY then
    since_trim = 0
    return call('XADD', k_stream, 'MAXLEN', '~', maxlen, '*', ...)
  end
  return call('XADD', k_stream, '*', ...)
end

-- Renewal time `at` (negative: a short lifetime) of this call's card's recent list.
local function remember(at)
  if not renewed[k_recent] then
    if renewed_count >= RENEWED_MAX then renewed, renewed_count = {}, 0 end
    renewed_count = renewed_count + 1
  end
  renewed[k_recent] = at
end

-- The recent list's lifetime after an event (`n`: its length after it), see "Upkeep" above.
local function renew(n)
  local last = renewed[k_recent]
  if keeps then
    if n == 1 or not last or last < 0 or bridge_now - last >= renew_every
        or bridge_now < last then
      call('EXPIRE', k_recent, recent_ttl)
      remember(bridge_now)
    end
  elseif n == 1 then
    call('EXPIRE', k_recent, short_ttl)
    remember(-bridge_now)
  else
    local since, every = 0, renew_every
    if last and last < 0 then since, every = bridge_now + last, short_every
    elseif last then since = bridge_now - last end
    if not last or since >= every or since < 0 then
      call('EXPIRE', k_recent, short_ttl, 'GT')
      remember(-bridge_now)
    end
  end
end

-- Appends an event to the stream (and the card's recent list); `p` is the pass it reports, and
-- for a sale, a top-up or an entry paid as you go (`sold`, the service day it counts on) its
-- price and currency; `balance` the wallet's balance after a top-up or a charge.
local function emit(name, p, reason, sold, balance)
  local ptype, trips, expires = '', '', ''
  if p then ptype, trips, expires = p.type, pass_texts(p) end
  local tap_time, clock_name = '', ''
  if stamp_time then tap_time, clock_name = at_text(), clock end
  local seq
  if sold or balance then
    local price, currency, day = '', '', ''
    if sold then price, currency, day = int(p.price), p.currency, sold end
    seq = append('event', name,
      'time', now_text, 'device', device, 'device_kind', kind, 'id', id, 'card', card,
      'pass', ptype, 'trips', trips, 'expires_at', expires, 'reason', reason or '',
      'tap_time', tap_time, 'mode', mode, 'clock', clock_name, 'price', price,
      'currency', currency, 'day', day, 'balance', balance or '')
  else
    seq = append('event', name,
      'time', now_text, 'device', device, 'device_kind', kind, 'id', id, 'card', card,
      'pass', ptype, 'trips', trips, 'expires_at', expires, 'reason', reason or '',
      'tap_time', tap_time, 'mode', mode, 'clock', clock_name)
  end
  if card ~= '' then
    -- Trimmed back to recent_len once it holds twice that: one LTRIM every recent_len events.
    local n = call('LPUSH', k_recent, seq)
    if n > 2 * recent_len then
      call('LTRIM', k_recent, '0', recent_keep)
    end
    renew(n)
  end
  -- A sale, top-up or charge has no reason; its slot carries the service day it counts on.
  if sold then reason = sold end
  if not ev_kind then
    ev_kind, ev_seq, ev_reason = name, seq, reason or ''
  else
    ev_more = ev_more .. '\t' .. name .. '\t' .. seq .. '\t' .. (reason or '')
  end
end

-- An integer field: nil when absent, false when present but not a non-negative integer.
local function int_field(v)
  if not v then return nil end
  local n = tonumber(v)
  -- `% 1` rather than math.floor: an operator, not a function call, on every field read.
  if not n or n < 0 or n % 1 ~= 0 then return false end
  return n
end

-- The words of a `terms` field, capturing what a gate uses: validity and duration.
local TERMS_WORDS = '^(%l[%l_]*) %d+ (%d+) %d+ %u%u%u ?[%w%-]*$'

-- What an entry reads of a pass record's text, by that text: a catalogue has few products, so
-- passes hold few distinct `terms` and `type` values, and each is read once per VM rather than
-- once per entry (a pattern match and a number conversion each). At most READ_MAX of each are
-- kept, then all forgotten at once, as `renewed` is.
local READ_MAX = 1000
local terms_read, terms_count, type_read, type_count = {}, 0, {}, 0

-- A `terms` field's validity and duration (a number), or false when unreadable.
local function gate_terms(text)
  local t = terms_read[text]
  if t == nil then
    local validity, duration = match(text, TERMS_WORDS)
    t = false
    if validity then t = {validity = validity, duration = tonumber(duration)} end
    if terms_count >= READ_MAX then terms_read, terms_count = {}, 0 end
    terms_read[text], terms_count = t, terms_count + 1
  end
  return t
end

-- Whether a stored `type` is a product id (what a button can send).
local function product_id(text)
  local ok = type_read[text]
  if ok == nil then
    ok = find(text, '^[A-Z0-9_]+$') ~= nil
    if type_count >= READ_MAX then type_read, type_count = {}, 0 end
    type_read[text], type_count = ok, type_count + 1
  end
  return ok
end

-- The card's pass: nil when there is none, or (nil, true) when the record cannot be read (a
-- garbled field, an unknown validity, a type without terms that no earlier version wrote). A
-- corrupt record is never granted, sold over or rewritten. Its price, currency and sale are not
-- read: only a sale writes them, and no decision on a stored pass reports them.
local function load_pass()
  local f = call('HMGET', k_pass, 'type', 'terms', 'trips', 'expires_at', 'issued_at', 'used_at')
  if not (f[1] or f[3] or f[4] or f[5]) then
    -- No pass, or (rarely) a record without any of its fields: corrupt.
    if call('EXISTS', k_pass) == 0 then return nil end
    keeps = true
    return nil, true
  end
  keeps = true
  local trips, expires_at, issued_at = int_field(f[3]), int_field(f[4]), int_field(f[5])
  local used_at = int_field(f[6])
  if not f[1] or not product_id(f[1]) or trips == false or expires_at == false
      or issued_at == false or used_at == false then
    return nil, true
  end
  local validity, duration
  if f[2] then
    local t = gate_terms(f[2])
    if not t then return nil, true end
    validity, duration = t.validity, t.duration
  else
    -- Written before the terms were one field: its terms as fields, or none at all.
    local g = call('HMGET', k_pass, 'validity', 'duration', 'price')
    if int_field(g[2]) == false or int_field(g[3]) == false then return nil, true end
    validity, duration = g[1], tonumber(g[2])
    if not validity then
      validity = LEGACY[f[1]]
      if not validity then return nil, true end
      if validity == 'period' then duration = legacy_period end
      if validity == 'trips' and (trips == nil or trips > 10) then return nil, true end
    end
  end
  if not VALIDITIES[validity] then return nil, true end
  if validity == 'trips' and trips == nil then return nil, true end
  if validity == 'period' and not duration then return nil, true end
  if validity == 'service_day' and not expires_at then return nil, true end
  -- With the slots pass_texts fills, so that filling them never grows the table. An expiry is
  -- reported as int() writes it, not as stored: a stored "1.8e12" reads as a number too.
  return {type = f[1], validity = validity, trips = trips or 0, duration = duration,
    expires_at = expires_at, issued_at = issued_at or 0, used_at = used_at,
    trips_text = false, expires_text = false}
end

local function live(p)
  return p.expires_at == nil or now < p.expires_at
end

-- The card's pass if it can still be used; an expired one is removed. Second value: corrupt.
local function live_pass()
  local p, corrupt = load_pass()
  if p and not live(p) then
    call('DEL', k_pass)
    return nil
  end
  return p, corrupt
end

-- A sale's pass record, whole: issued where load_pass found nothing or deleted an expired one,
-- so no field of an older record can be left behind. With where it was sold and on which
-- service day: what a void needs.
local function save_pass(p, terms_text)
  keeps = true
  if p.expires_at then
    call('HSET', k_pass, 'type', p.type, 'terms', terms_text, 'trips', int(p.trips),
      'issued_at', int(p.issued_at), 'sold_by', device, 'day', day_label or '',
      'expires_at', int(p.expires_at))
    call('PEXPIRE', k_pass, int(max(p.expires_at - bridge_now, 0) + GC_MS))
  else
    call('HSET', k_pass, 'type', p.type, 'terms', terms_text, 'trips', int(p.trips),
      'issued_at', int(p.issued_at), 'sold_by', device, 'day', day_label or '')
  end
end

-- A pass after an entry: only what the entry changed (a trips pass's count, a period pass's
-- expiry once activated, when it was first entered), in whatever layout the record has.
local function update_pass(p, activated, first_use)
  local trips, expires = pass_texts(p)
  if p.validity == 'trips' then
    if first_use then
      call('HSET', k_pass, 'trips', trips, 'used_at', int(now))
    else
      call('HSET', k_pass, 'trips', trips)
    end
  elseif activated then
    if first_use then
      call('HSET', k_pass, 'expires_at', expires, 'used_at', int(now))
    else
      call('HSET', k_pass, 'expires_at', expires)
    end
    call('PEXPIRE', k_pass, int(max(p.expires_at - bridge_now, 0) + GC_MS))
  elseif first_use then
    call('HSET', k_pass, 'used_at', int(now))
  end
end

-- Terms as the bridge passes them and a sale stores them: "validity trips duration price
-- currency version" (a sale stored before versions were passed has no version). Nil when
-- unreadable.
local function read_terms(text)
  if not text then return nil end
  local v, trips, duration, price, currency, version =
    match(text, '^(%l[%l_]*) (%d+) (%d+) (%d+) (%u%u%u) ?([%w%-]*)$')
  if not v or not TERMS[v] then return nil end
  if version == '' then version = nil end
  return {validity = v, trips = tonumber(trips), duration = tonumber(duration),
    price = tonumber(price), currency = currency, version = version, text = text}
end

local function load_sale()
  local f = call('HMGET', k_sale, 'card', 'selected', 'expires_at', 'terms')
  if not f[1] then return nil end
  local expires_at = tonumber(f[3]) or 0
  if now > expires_at then
    call('DEL', k_sale)
    return nil
  end
  local selected = f[2]
  if selected == '' then selected = nil end
  -- Card ids are upper case; a sale started before that rule compares the same way.
  return {card = upper(f[1]), selected = selected, terms = read_terms(f[4])}
end

local function save_sale(sale_card, selected, terms_text)
  call('HSET', k_sale, 'card', sale_card, 'selected', selected or '',
    'terms', terms_text or '', 'expires_at', int(now + sale_timeout))
  call('PEXPIRE', k_sale, int(sale_timeout + GC_MS))
end

-- `money`: pay as you go's "charged,balance" for a denial for want of funds.
local function deny(reason, money)
  if mode == 'offline' then
    -- The rider is through already: record what could not be charged, never a late denial.
    call('HINCRBY', k_unpaid, reason, '1')
    count_device('unpaid')
    emit('unpaid-entry', nil, reason)
    return finish('unpaid_entry', reason, nil, nil, nil, money)
  end
  call('HINCRBY', k_denied, reason, '1')
  count_device('denied')
  emit('pass-denied', nil, reason)
  return finish('denied', reason, nil, nil, nil, money)
end

local function blocked()
  if call('EXISTS', k_blocked) == 1 then
    keeps = true
    return true
  end
  return false
end

-- The answer a message of this device got, rebuilt from the card's history: for a waiting tap
-- redelivered after its seen record has gone (see "How long the seen record lives"), and for the
-- waiting tap an offline entry or a retap replaces (settle_replaced; `near`: the replacing
-- message's time, which the waiting tap's may precede by up to `before` ms and follow by up to
-- max_skew).
-- A first delivery may have been decided and charged while its answer was lost (a bridge killed
-- between the two); answering `stale` now would tell the device nothing was done. The card's
-- recent list names its last events: those of this device and id, oldest first, are the
-- decision's events, and the last of them says what the answer was. Nil when none is there (never
-- decided, decided without an event, or trimmed from the stream): then nothing was charged. Read
-- only on these rare paths.
local REPLAYED = {['pass-used'] = 'granted', ['pass-issued'] = 'pass_issued',
  ['pass-denied'] = 'denied', ['tap-stale'] = 'stale', ['fare-charged'] = 'granted',
  ['topped-up'] = 'topped_up'}
local function decided_before(msg_id, msg_mode, near, before)
  local seqs = call('LRANGE', k_recent, '0', recent_keep)
  local found, last = '', nil
  for i = 1, #seqs do
    local entry = call('XRANGE', k_stream, seqs[i], seqs[i])[1]
    if entry then
      local f, e = entry[2], {}
      for j = 1, #f - 1, 2 do e[f[j]] = f[j + 1] end
      local t = near and tonumber(e.tap_time)
      if e.device == device and e.device_kind == kind and e.id == msg_id and e.mode == msg_mode
          and (not near or (t and t - near <= max_skew and near - t <= before)) then
        local item = e.event .. '\t' .. seqs[i] .. '\t' .. (e.reason or '')
        if found == '' then found, last = item, e else found = item .. '\t' .. found end
      end
    end
  end
  local outcome = last and REPLAYED[last.event]
  if not outcome then return nil end
  local reason, selected, charged = '', '', ''
  if outcome == 'denied' then reason = last.reason end
  if outcome == 'topped_up' then selected = last.pass or '' end
  if last.event == 'fare-charged' then charged = last.price or '' end
  return outcome .. '\t' .. reason .. '\t' .. selected .. '\t' .. (last.pass or '') .. '\t'
    .. (last.trips or '') .. '\t' .. (last.expires_at or '') .. '\t' .. (last.time or '')
    .. '\t' .. (last.tap_time or '') .. '\t' .. (last.clock or '') .. '\t'
    .. (last.price or '') .. '\t' .. (last.currency or '') .. '\t=' .. charged .. ','
    .. (last.balance or '') .. '\t' .. found
end

-- A gate's message naming the waiting tap it replaces (same device and card): the ride is charged
-- once.
-- - An offline entry (a fail-open gate let the rider through when that tap's answer did not
--   come) stands for that tap and has its time. That tap granted (its answer late or lost): the
--   entry is `entry_settled` by that charge, with no new charge or event.
-- - A retap (a waiting tap: a fail-closed gate turned the rider away when that tap's answer did
--   not come, and the rider tapped again) follows it by up to retap_ms (the settings' last
--   number, rules::RETAP_ACCEPTED_WITHIN_MS). That tap granted: the retap is `granted` by that
--   charge, with no new charge or event; the rider goes through now.
-- Answered otherwise (denied, stale): the message is decided as usual. Not decided yet: a record
-- answering that tap `stale` is left where its seen record would be, for as long as it could
-- still be decided, so it charges nothing when it comes. Nil: decide as usual.
local function settle_replaced()
  local retap = mode == 'online'
  local line
  local stored = call('GET', k_replaced)
  if stored then
    local nl = find(stored, '\n', 1, true)
    if not nl then return nil end
    local f = sub(stored, 1, nl - 1)
    if retap then
      -- "gate:<card>::<time>:online", ":<id>" after it if it was a retap itself, its time
      -- within retap_ms before this one's.
      local head = fingerprint_of('gate', card, '', '', '', '') .. ':'
      local digits = sub(f, 1, #head) == head and match(sub(f, #head + 1), '^(%d+):online')
      local t = digits and tonumber(digits)
      if not t or at - t > retap_ms or t - at > max_skew then return nil end
    elseif f ~= fingerprint_of('gate', card, '', stamp_text, 'online', '') then
      return nil
    end
    line = sub(stored, nl + 1)
  else
    line = decided_before(replaces, 'online', at, retap and retap_ms or max_skew)
    if not line then
      -- The waiting tap's record, answering `stale`: for an offline entry, its fingerprint (it
      -- has the entry's time); for a retap, whose waiting tap's time is not known, any time.
      local waiting = fingerprint_of('gate', card, '', retap and '*' or stamp_text, 'online', '')
      call('SET', k_replaced, record(waiting, 'stale'), 'PX',
        int(window + max_future))
      return nil
    end
  end
  -- The fixed fields, and pay as you go's when the line has them (lines stored before it had
  -- none: their twelfth field is an event's kind or empty).
  local f, pos = {}, 1
  while #f < 12 do
    local tab = find(line, '\t', pos, true)
    if not tab then break end
    f[#f + 1], pos = sub(line, pos, tab - 1), tab + 1
  end
  if #f < 6 or f[1] ~= 'granted' or f[4] == '' then return nil end
  -- A granted tap pays for one replacement: once an offline entry or a retap has been settled on
  -- it, another naming it is a ride of its own (the same one again, its record gone, is settled
  -- again). Kept as long as the tap can be found in the card's history.
  local by = call('GET', k_settled)
  if by and by ~= id then return nil end
  if not by then call('SET', k_settled, id, 'EX', recent_ttl) end
  local price, money
  if f[12] and sub(f[12], 1, 1) == '=' then
    price, money = f[10] .. '\t' .. f[11], sub(f[12], 2)
  end
  if retap then
    -- Granted on that charge, with no event to find it by: its record is kept until a retap
    -- naming it could no longer come, should its answer be lost too.
    seen_unit, seen_for = 'PX', int(retap_ms + window + max_future)
  end
  -- The pass as that answer reported it: trips left are reported only for a trips product.
  local validity = 'single'
  if f[5] ~= '' then validity = 'trips' end
  return finish(retap and 'granted' or 'entry_settled', nil, nil,
    {type = f[4], validity = validity, trips = tonumber(f[5]) or 0,
      expires_at = tonumber(f[6]), issued_at = 0}, price, money)
end

-- Pay-as-you-go terms from their words (see the header), parsed when the text changes.
local function load_payg(text)
  local fare, daily, weekly, minimum, currency =
    match(text, '^(%d+) ([%d%-]+) ([%d%-]+) (%-?%d+) (%u%u%u)$')
  if not fare then return nil end
  payg_terms = {fare = tonumber(fare), daily = tonumber(daily), weekly = tonumber(weekly),
    minimum = tonumber(minimum), currency = currency}
  payg_text = text
  return payg_terms
end

-- Drops the wallet's per-day and per-week totals before `keep` (a date; labels compare as text).
local function prune_wallet(keep)
  local names = call('HKEYS', k_wallet)
  for i = 1, #names do
    local label = match(names[i], '^day:(.+)$') or match(names[i], '^week:(.+)$')
    if label and label < keep then call('HDEL', k_wallet, names[i]) end
  end
  call('HSET', k_wallet, 'kept_from', keep)
end

-- An entry with no usable pass, paid as you go: the fare cut to what is left of the day's and
-- week's caps, from the wallet, in this call with its counters and its event.
local function pay_as_you_go()
  local day_field, week_field = 'day:' .. fare_day.day, 'week:' .. fare_day.week
  local w = call('HMGET', k_wallet, 'balance', day_field, week_field, 'kept_from')
  local balance = tonumber(w[1]) or 0
  if w[1] then keeps = true end
  local charged = payg.fare
  if w[4] and fare_day.day < w[4] then
    -- Its day's totals were dropped: its caps can no longer be known.
    charged = 0
  else
    local day_charged, week_charged = tonumber(w[2]) or 0, tonumber(w[3]) or 0
    if payg.daily then charged = min(charged, max(payg.daily - day_charged, 0)) end
    if payg.weekly then charged = min(charged, max(payg.weekly - week_charged, 0)) end
  end
  if charged > 0 and balance - charged < payg.minimum then
    return deny('insufficient_funds', ',' .. int(balance))
  end
  local charged_text = int(charged)
  if charged > 0 then
    keeps = true
    local minus = int(-charged)
    balance = call('HINCRBY', k_wallet, 'balance', minus)
    call('HINCRBY', k_wallet, 'charged', charged_text)
    call('HINCRBY', k_wallet, day_field, charged_text)
    local week_total = call('HINCRBY', k_wallet, week_field, charged_text)
    if week_total == charged and (not w[4] or fare_day.keep_from > w[4]) then
      prune_wallet(fare_day.keep_from)
    end
  end
  local p = {type = 'PAYG', validity = 'single', trips = 0, price = charged,
    currency = payg.currency}
  call('HINCRBY', k_entries, 'PAYG', '1')
  count_device('granted')
  call('HINCRBY', k_fare_revenue, 'fares', '1')
  if charged > 0 then call('HINCRBY', k_fare_revenue, 'fare_amount', charged_text) end
  local balance_text = int(balance)
  emit('fare-charged', p, nil, fare_day.day, balance_text)
  local outcome = 'granted'
  if mode == 'offline' then outcome = 'entry_settled' end
  return finish(outcome, nil, nil, p, charged_text .. '\t' .. payg.currency,
    charged_text .. ',' .. balance_text)
end

local function gate()
  if blocked() then return deny('blocked') end
  local p, corrupt = load_pass()
  if corrupt then return deny('corrupt_pass') end
  if p and mode == 'offline' and p.issued_at > now + max_future then
    -- Sold after the entry happened: it did not pay for it, and is left as it is.
    if payg then return pay_as_you_go() end
    return deny('no_pass')
  end
  if p and not live(p) then
    call('DEL', k_pass)
    if not payg then return deny('expired') end
    p = nil
  end
  if not p then
    if payg then return pay_as_you_go() end
    return deny('no_pass')
  end
  local activated, first_use = false, not p.used_at
  if first_use then p.used_at = now end
  if p.validity == 'trips' then
    p.trips = max(p.trips - 1, 0)
  elseif p.validity == 'period' and not p.expires_at then
    p.expires_at = now + p.duration
    activated = true
  end
  -- The first entry is recorded once (a pass written over itself keeps it): a used pass can no
  -- longer be voided.
  if p.validity == 'single' or (p.validity == 'trips' and p.trips == 0) then
    call('DEL', k_pass)
  else
    update_pass(p, activated, first_use)
  end
  call('HINCRBY', k_entries, p.type, '1')
  count_device('granted')
  if activated then emit('pass-activated', p) end
  emit('pass-used', p)
  if mode == 'offline' then
    return finish('entry_settled', nil, nil, p)
  end
  return finish('granted', nil, nil, p)
end

-- A top-up sold: its price added to the card's wallet, with its counters, its service day's
-- revenue and its event.
local function top_up(product, t)
  if find(product, '^[A-Z0-9_]+$') == nil then
    return redis.error_reply('tapgate: sale holds an unreadable product or terms')
  end
  keeps = true
  local price = int(t.price)
  local balance = int(call('HINCRBY', k_wallet, 'balance', price))
  call('HINCRBY', k_wallet, 'topped_up', price)
  call('HSET', k_wallet, 'currency', t.currency)
  call('HINCRBY', k_issued, product, '1')
  count_device('issued')
  call('HINCRBY', k_revenue, 'sales', '1')
  call('HINCRBY', k_revenue, 'amount', price)
  call('HINCRBY', k_revenue, 'top_ups', '1')
  call('HINCRBY', k_revenue, 'topped_up', price)
  call('HINCRBY', k_revenue, 'product:' .. product .. ':sales', '1')
  call('HINCRBY', k_revenue, 'product:' .. product .. ':amount', price)
  call('HINCRBY', k_revenue, 'terminal:' .. device .. ':sales', '1')
  call('HINCRBY', k_revenue, 'terminal:' .. device .. ':amount', price)
  local p = {type = product, validity = 'single', trips = 0, price = t.price,
    currency = t.currency}
  emit('topped-up', p, nil, day_label or '', balance)
  return finish('topped_up', nil, product, p, price .. '\t' .. t.currency, ',' .. balance)
end

local function terminal()
  local sale = load_sale()
  if sale and sale.selected then
    call('DEL', k_sale)
    if sale.card ~= card then
      return finish('card_mismatch')
    end
    if blocked() then return deny('blocked') end
    local p, corrupt = live_pass()
    if corrupt then return deny('corrupt_pass') end
    if sale.terms and sale.terms.validity == 'top_up' then
      return top_up(sale.selected, sale.terms)
    end
    if p then
      return finish('already_has_pass', nil, nil, p)
    end
    local t = sale.terms
    if not t or find(sale.selected, '^[A-Z0-9_]+$') == nil then
      return redis.error_reply('tapgate: sale holds an unreadable product or terms')
    end
    p = {type = sale.selected, validity = t.validity, trips = 0, duration = t.duration,
      price = t.price, currency = t.currency, issued_at = now}
    if t.validity == 'trips' then p.trips = t.trips end
    if t.validity == 'service_day' then p.expires_at = day_end end
    save_pass(p, t.text)
    call('HINCRBY', k_issued, p.type, '1')
    count_device('issued')
    -- Revenue of the service day, by product and by terminal, in the same step as the sale.
    local price = int(p.price)
    call('HINCRBY', k_revenue, 'sales', '1')
    call('HINCRBY', k_revenue, 'amount', price)
    call('HINCRBY', k_revenue, 'product:' .. p.type .. ':sales', '1')
    call('HINCRBY', k_revenue, 'product:' .. p.type .. ':amount', price)
    call('HINCRBY', k_revenue, 'terminal:' .. device .. ':sales', '1')
    call('HINCRBY', k_revenue, 'terminal:' .. device .. ':amount', price)
    emit('pass-issued', p, nil, day_label or '')
    return finish('pass_issued', nil, nil, p, price .. '\t' .. p.currency)
  end
  call('DEL', k_sale)
  if blocked() then return deny('blocked') end
  local p, corrupt = live_pass()
  if corrupt then return deny('corrupt_pass') end
  if p and not top_ups then
    return finish('already_has_pass', nil, nil, p)
  end
  save_sale(card, nil)
  return finish('select_pass')
end

local function button()
  local sale = load_sale()
  if not sale then
    return finish('tap_card_first')
  end
  local t = read_terms(chosen_terms)
  if find(chosen, '^[A-Z0-9_]+$') == nil or not t then
    return redis.error_reply('tapgate: refusing to store an unreadable decision for ' .. op)
  end
  save_sale(sale.card, chosen, t.text)
  return finish('tap_to_confirm', nil, chosen, nil, int(t.price) .. '\t' .. t.currency)
end

-- This call's message, keys and arguments, into the locals above. Apart from the function below
-- because Lua allows a function at most 60 upvalues.
local function take(keys, args)
  op, now_text = args[1], args[2]
  -- The bridge's numbers are digits: `+ 0` converts them once, where tonumber converts twice.
  now = now_text + 0
  bridge_now = now
  device, id = args[3], args[4]
  stamp_text, mode = args[6], args[7]
  replaces, chosen_terms, day_end, day_label = '', nil, nil, nil
  stamp_time = nil
  if stamp_text and stamp_text ~= '' then stamp_time = stamp_text + 0 end
  if args[8] ~= settings_text then load_settings(args[8]) end
  k_seen, k_stream, k_device, k_presence, k_stale, k_denied =
    keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  -- Every per-op key is assigned on every call (nil where the op has none), so none is left
  -- over from an earlier call.
  k_entries, k_unpaid, k_replaced, k_issued, k_revenue, k_settled = nil, nil, nil, nil, nil, nil
  k_wallet, k_fare_revenue, payg, fare_day, top_ups = nil, nil, nil, nil, false
  if op == 'button' then
    kind, card, chosen, chosen_terms = 'terminal', '', args[5], args[9]
    k_sale, k_pass, k_blocked, k_recent = keys[7], nil, nil, nil
  else
    card, chosen = args[5], ''
    k_pass, k_blocked, k_recent = keys[7], keys[8], keys[9]
    if op == 'gate' then
      kind, k_sale, replaces = 'gate', nil, args[9] or ''
      k_entries, k_unpaid = keys[10], keys[11]
      if replaces ~= '' then k_replaced, k_settled = keys[#keys - 1], keys[#keys] end
      if args[10] then
        if args[10] == payg_text then payg = payg_terms else payg = load_payg(args[10]) end
        local d, wk, keep, starts, ends = match(args[11] or '',
          '^(%S+) (%S+) (%S+) (%d+) (%d+)$')
        if d then
          fare_day = {day = d, week = wk, keep_from = keep, starts = tonumber(starts),
            ends = tonumber(ends)}
        end
        k_wallet, k_fare_revenue = keys[12], keys[13]
      end
    else
      kind, day_end, day_label = 'terminal', tonumber(args[9]), args[10]
      k_issued, k_sale, k_revenue, k_wallet = keys[10], keys[11], keys[12], keys[13]
      top_ups = args[11] == '1'
    end
  end
end

return function(keys, args)
  if not format then bind() end
  call = redis.call
  take(keys, args)
  ev_kind, ev_more, keeps = nil, '', false
  at, clock, at_string = now, 'bridge', nil

  fingerprint = fingerprint_of(op, card, chosen, stamp_time and stamp_text or '', mode, replaces)
  -- Seen record lifetime, see above: PX for a waiting stamped message, EX otherwise.
  seen_unit, seen_for = 'EX', seen_ttl
  if stamp_time and mode ~= 'offline' then
    seen_unit = 'PX'
    -- A terminal's message may start or change a sale, which no event records: its record
    -- outlives the sale it could have touched.
    if stamp_time > now then
      local life = stamp_time - now + window + max_future
      if op ~= 'gate' then life = life + sale_timeout end
      seen_for = int(life)
    elseif op == 'gate' then
      seen_for = waiting_life
    else
      seen_for = terminal_life
    end
  end
  local stored = call('GET', k_seen)
  if stored then
    if sub(stored, 1, 1) == '{' then
      return '1' .. stored
    end
    local nl = find(stored, '\n', 1, true)
    if nl and sub(stored, 1, nl - 1) == fingerprint then
      return '1' .. sub(stored, nl + 1)
    end
    if not nl then
      -- Neither format: hand it back so the bridge refuses it as unreadable.
      return '1' .. stored
    end
    -- Left by a retap decided first (settle_replaced), for this tap at whatever time.
    if stamp_time and op == 'gate' and mode == 'online'
        and sub(stored, 1, nl - 1) == fingerprint_of(op, card, '', '*', mode, '') then
      return '1' .. sub(stored, nl + 1)
    end
    return '2'
  end

  -- Time (rules::resolve_time): the stamp less the device's measured lead when its clock runs
  -- ahead ('bridge' time once that lead is flagged); as sent when it runs behind (a heartbeat read
  -- late after an outage looks slow, and correcting by it would make late taps look fresh); the
  -- bridge's clock without a stamp.
  if stamp_time then
    local skew = tonumber(call('HGET', k_presence, 'clock_skew_ms')) or 0
    local lead = max(skew, 0)
    at, clock = max(stamp_time - lead, 0), 'device'
    -- The bridge sends the stamp as integer digits: as it is when nothing was taken off.
    if lead == 0 then at_string = stamp_text end
    if lead > max_skew then clock = 'bridge' end
    if at > now + max_future then
      return '3time_in_future'
    end
    if mode == 'offline' and op ~= 'gate' then
      return '3offline_not_allowed'
    end
    if mode == 'offline' and now - at > max_offline_age then
      return '3time_too_old'
    end
    if mode == 'offline' then
      -- Settled at the time it happened: the rules run at `at`, and an entry paid as you go is
      -- charged on the caps of its own service day: the bridge passed the fare day of the stamp,
      -- which the device's lead may have moved `at` out of.
      now = at
      if fare_day and (now < fare_day.starts or now >= fare_day.ends) then
        return '4' .. at_text()
      end
      if replaces ~= '' and card ~= '' then
        local settled = settle_replaced()
        if settled then return settled end
      end
    elseif now - at > window then
      if card ~= '' then
        local earlier = decided_before(id, mode)
        if earlier then return '1' .. earlier end
      end
      -- The device gave up waiting: nothing decided, nothing charged.
      call('HINCRBY', k_stale, kind, '1')
      count_device('stale')
      emit('tap-stale', nil, 'stale')
      return finish('stale')
    elseif replaces ~= '' and op == 'gate' and card ~= '' then
      local settled = settle_replaced()
      if settled then return settled end
    end
  end

  if op == 'gate' then
    if k_wallet and not (payg and fare_day) then
      return redis.error_reply('tapgate: unreadable pay-as-you-go terms or fare day')
    end
    return gate()
  end
  if op == 'terminal' then return terminal() end
  if op == 'button' then return button() end
  return redis.error_reply('tapgate: unknown op ' .. tostring(op))
end
