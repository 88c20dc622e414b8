/**
 * A mergeable HdrHistogram-style histogram of non-negative integers (the benchmark records microseconds):
 * exact below 256, then 128 linear sub-buckets per power of two (relative error under 0.8%). Load generators
 * run in several processes; each sends its histogram as sparse [bucket, count] pairs and the runner adds them.
 */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
const LINEAR_LIMIT = SUB * 2;

function bucketOf(value: number): number {
  const v = Math.max(0, Math.floor(value));
  if (v < LINEAR_LIMIT) return v;
  const exponent = 31 - Math.clz32(v);
  const shift = exponent - SUB_BITS;
  const mantissa = (v >>> shift) - SUB;
  return LINEAR_LIMIT + (shift - 1) * SUB + mantissa;
}

/** The middle of a bucket: the value a percentile falling in it reports. */
function bucketValue(bucket: number): number {
  if (bucket < LINEAR_LIMIT) return bucket;
  const shift = Math.floor((bucket - LINEAR_LIMIT) / SUB) + 1;
  const mantissa = (bucket - LINEAR_LIMIT) % SUB;
  const low = (SUB + mantissa) * 2 ** shift;
  return low + (2 ** shift - 1) / 2;
}

export type SparseHistogram = [number, number][];

export class Histogram {
  private readonly counts = new Map<number, number>();
  count = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;
  private sum = 0;

  record(value: number): void {
    const bucket = bucketOf(value);
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
    this.count++;
    this.sum += value;
    if (value > this.max) this.max = value;
    if (value < this.min) this.min = value;
  }

  get mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  /** The value at percentile `p` (0–100); the exact maximum for 100. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    if (p >= 100) return this.max;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (const bucket of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(bucket)!;
      if (seen >= rank) return Math.min(bucketValue(bucket), this.max);
    }
    return this.max;
  }

  toJSON(): { buckets: SparseHistogram; count: number; max: number; min: number; sum: number } {
    return { buckets: [...this.counts], count: this.count, max: this.max, min: this.min, sum: this.sum };
  }

  static fromJSON(data: ReturnType<Histogram['toJSON']>): Histogram {
    const histogram = new Histogram();
    histogram.add(data);
    return histogram;
  }

  add(other: Histogram | ReturnType<Histogram['toJSON']>): void {
    const data = other instanceof Histogram ? other.toJSON() : other;
    for (const [bucket, count] of data.buckets)
      this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + count);
    this.count += data.count;
    this.sum += data.sum;
    if (data.count > 0) {
      this.max = Math.max(this.max, data.max);
      this.min = Math.min(this.min, data.min ?? data.max);
    }
  }
}
