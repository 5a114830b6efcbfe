-- tapgate: record a device's clock skew from its heartbeat, and flag or clear it.
--
-- KEYS[1] device presence hash   KEYS[2] event stream   KEYS[3] counters:clock
-- ARGV: bridge now_ms, device clock_ms, max_skew_ms, device, device_kind, stream_maxlen,
--       device_ttl_s
--
-- Returns '' when the flag did not change, else the JSON of the clock-skew notice appended to
-- the stream, prefixed with its stream id and a newline.

local now, clock, max_skew = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local skew = clock - now
local flagged = math.abs(skew) > max_skew
local was = redis.call('HGET', KEYS[1], 'clock_flagged') == '1'
redis.call('HSET', KEYS[1], 'clock_skew_ms', string.format('%d', skew),
  'clock_flagged', flagged and '1' or '0', 'clock_checked_at', string.format('%d', now))
redis.call('EXPIRE', KEYS[1], ARGV[7])
if flagged == was then
  return ''
end
local reason = flagged and 'clock_off' or 'clock_ok'
redis.call('HINCRBY', KEYS[3], flagged and 'flagged' or 'cleared', 1)
local e = {event = 'clock-skew', time = now, device = ARGV[4], device_kind = ARGV[5],
  reason = reason, skew_ms = skew}
local json = cjson.encode(e)
local seq = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'event', json)
return seq .. '\n' .. json
