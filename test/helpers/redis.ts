// The tests' own redis-server and free ports come from the tools module the soak and the benchmarks use.
export { freePort } from '../../scripts/lib/free-port.ts';
export { RedisServer as TestRedis } from '../../scripts/lib/redis-server.ts';
