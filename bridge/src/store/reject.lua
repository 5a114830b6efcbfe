-- tapgate: record a refused device message atomically.
--
-- KEYS[1] event stream   KEYS[2] counters:rejected   KEYS[3] counters:device:{device} (optional)
-- ARGV: reason, event JSON, stream_maxlen, device_ttl_s
-- Returns the stream entry id of the `rejected` event.

redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if KEYS[3] then
  redis.call('HINCRBY', KEYS[3], 'rejected', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[2])
