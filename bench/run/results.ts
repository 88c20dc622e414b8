/** The shape of bench/results.json: one RunResult per server and scenario, the idle and ingest scenarios. */
import type { Histogram } from '../histogram.ts';
import type { ClassStats } from '../loadgen.ts';
import type { ClientType } from '../mix.ts';
import type { formatSizes } from '../report/format-sizes.ts';
import type { options } from './options.ts';

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}
export interface ProcessUsage {
  /** CPU (user+sys) over the window, as % of one core. */
  cpuPct: number;
  /** Where it ran: share of samples per CPU (field 39 of /proc/<pid>/stat). */
  cores: string;
}

export interface RunResult {
  kind: string;
  clients: number;
  tui: number;
  web: number;
  ready: number;
  failed: number;
  connectSeconds: number;
  seconds: number;
  deliveries: number;
  deliveriesPerSec: number;
  expectedPerSec: number;
  bytesPerClientPerSec: number;
  classes: Record<string, ClassStats & { meanSize: number; bytesPerClientPerSec: number }>;
  latency: Record<ClientType, LatencySummary>;
  tickLatency: Record<ClientType, LatencySummary>;
  lost: number;
  outOfOrder: number;
  extraSnapshots: number;
  errors: number;
  closes: Record<string, number>;
  usage: Record<string, ProcessUsage>;
  serverCpuUsPerDelivery: number;
  rss: { baseMB: number; endMB: number; perClientKB: number };
  serverLoopP99Ms: number;
  loadgenLoopP99Ms: number;
  tickMs: {
    mean: number;
    p99: number;
    max: number;
    perType?: Record<string, { mean: number; p99le: number }>;
  };
  systemBusyPct: Record<string, number>;
  /** CPU used on the machine by processes that are not part of this run, in % of one core. */
  foreignPct: number;
  loadavg: number;
  hubSentPerSec?: number;
  /** hub-replicas: how many hub processes; `usage.server` is their sum, `usage.replica1`… each. */
  replicas?: number;
  /** hub-replicas: messages each replica sent per second (dashboard_sent_messages_total). */
  replicaSentPerSec?: number[];
  /** Broadcast ticks per second the hub actually ran, per client type (cadence check). */
  hubTicksPerSec?: Record<string, number>;
  slowConsumerSkips?: number;
  samples?: Record<string, unknown[]>;
}
export interface LoadgenStats {
  evt: string;
  classes: Record<string, ClassStats>;
  latency: Record<ClientType, ReturnType<Histogram['toJSON']>>;
  tickLatency: Record<ClientType, ReturnType<Histogram['toJSON']>>;
  closes: Record<string, number>;
  open: number;
  loopDelayP99Ms: number;
  samples: Record<string, unknown[]>;
}

export interface ServerStats {
  evt: string;
  loopDelayP99Ms: number;
  tick: ReturnType<Histogram['toJSON']>;
  sentFrames: number;
}
export interface IdleResult {
  kind: string;
  clients: number;
  ready: number;
  baseMB: number;
  /** RSS with every client connected but not subscribed, then subscribed (snapshot sent, no traffic). */
  connectedMB: number;
  endMB: number;
  perClientKB: number;
  connectedPerClientKB: number;
  /** JS heap used (hub only, from /metrics): before, connected, subscribed. */
  heapMB?: [number, number, number];
  cores: string;
}
export interface IngestPhase {
  phase: string;
  appliedPerSec: number;
  invalid: number;
  hubCpuPct: number;
  publisherCpuPct: number;
  redisCpuPct: number;
  perCorePerSec: number;
  cores: string;
  byTopic: Record<string, number>;
}
export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; model: string; node: string; pinned: boolean; loadavgStart: number[] };
  options: typeof options;
  runs: RunResult[];
  idle: IdleResult[];
  ingest: IngestPhase[];
  formats: ReturnType<typeof formatSizes>;
  command: string;
}
