-- tapgate: record a device's clock skew from its heartbeat, and flag or clear it.
--
-- A chunk of the bridge's function library (see library.rs), returning the clock function.
--
-- keys[1] device presence hash   keys[2] event stream   keys[3] counters:clock
-- args: bridge now_ms, device clock_ms, max_skew_ms, device, device_kind, stream_maxlen,
--       device_ttl_s
--
-- Returns an empty array when the flag did not change, else the stream id of the clock-skew
-- notice appended to the stream followed by its fields and values (tapgate_protocol::stream).

return function(keys, args)
  local now, clock, max_skew = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local skew = clock - now
  local flagged = math.abs(skew) > max_skew
  local was = redis.call('HGET', keys[1], 'clock_flagged') == '1'
  redis.call('HSET', keys[1], 'clock_skew_ms', string.format('%d', skew),
    'clock_flagged', flagged and '1' or '0', 'clock_checked_at', string.format('%d', now))
  redis.call('EXPIRE', keys[1], args[7])
  if flagged == was then
    return {}
  end
  redis.call('HINCRBY', keys[3], flagged and 'flagged' or 'cleared', 1)
  local fields = {'event', 'clock-skew', 'time', string.format('%d', now), 'device', args[4],
    'device_kind', args[5], 'reason', flagged and 'clock_off' or 'clock_ok',
    'skew_ms', string.format('%d', skew)}
  local seq = redis.call('XADD', keys[2], 'MAXLEN', '~', args[6], '*', unpack(fields))
  table.insert(fields, 1, seq)
  return fields
end
