-- tapgate: record a refused device message atomically.
--
-- A chunk of the bridge's function library (see library.rs), returning the reject function.
--
-- keys[1] event stream   keys[2] counters:rejected   keys[3] counters:device:{device} (optional)
-- args: reason, stream_maxlen, device_ttl_s, then the event's stream fields and values
--       (tapgate_protocol::stream)
-- Returns the stream entry id of the `rejected` event.

return function(keys, args)
  redis.call('HINCRBY', keys[2], args[1], 1)
  if keys[3] then
    redis.call('HINCRBY', keys[3], 'rejected', 1)
    redis.call('EXPIRE', keys[3], args[3])
  end
  return redis.call('XADD', keys[1], 'MAXLEN', '~', args[2], '*', unpack(args, 4))
end
