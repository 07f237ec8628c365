/**
 * The rate decision, run inside Redis: GCRA (the generic cell rate algorithm, a token bucket
 * kept as one timestamp) for `n` requests at once, on Redis' own clock (`TIME`), so instances
 * with skewed clocks agree and no read-modify-write crosses the network. One key per bucket, so
 * the script runs on Redis Cluster too; the key expires when its bucket would be full again.
 *
 * KEYS[1] bucket; ARGV: interval (ms per token), burst, n.
 * Returns { granted, remaining, retry_ms (0 when all granted), reset_ms }.
 */
export const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval + 1e-9)
if room < 0 then room = 0 end
local granted = math.min(n, room)
tat = tat + granted * interval
local reset = math.ceil(tat - now)
if granted > 0 and reset > 0 then redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', reset) end
local retry = 0
if granted < n then retry = math.max(1, math.ceil(tat + interval - burst * interval - now)) end
return { granted, room - granted, retry, reset }
`;

/** What the script answers for a batch of `n` requests. */
export interface BatchResult {
  granted: number;
  remaining: number;
  retryAfterMs: number;
  resetMs: number;
}
