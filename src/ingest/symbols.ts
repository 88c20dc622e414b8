/**
 * The symbols of market_data, orderbook and trades, with when each was last written: at most ingest.max_symbols
 * of them, and one idle for ingest.symbol_idle_ttl is forgotten (by a sweep, or to make room for a new one).
 */
export interface SymbolTableOptions {
  /** Most symbols held; a new one past it is refused unless the least recently written one is idle. */
  max?: number;
  /** A symbol with no write for this long, in ms, is forgotten; never without it. */
  idleTtl?: number;
  now: () => number;
  /** Called for each symbol forgotten: its records are to go. */
  forget: (symbol: string) => void;
}

export class SymbolTable {
  /** When each symbol was last written; least recent first. */
  private readonly lastWritten = new Map<string, number>();
  private readonly options: SymbolTableOptions;
  private readonly max: number;

  constructor(options: SymbolTableOptions) {
    this.options = options;
    this.max = options.max ?? Number.POSITIVE_INFINITY;
  }

  get size(): number {
    return this.lastWritten.size;
  }

  /** Records a write of `symbol` at `at`. The place under `max` is taken here, so a refused record takes none. */
  written(symbol: string, at: number): void {
    // Most recently written last: the first entry is the one to evict.
    this.lastWritten.delete(symbol);
    this.lastWritten.set(symbol, at);
  }

  /** Whether `symbol` may be written: it is known, a place is free, or an idle symbol was forgotten to make one. */
  admits(symbol: string): boolean {
    return this.lastWritten.has(symbol) || this.lastWritten.size < this.max || this.sweep(true) > 0;
  }

  /**
   * Forgets symbols with no write for `idleTtl`, least recently written first; with `room`, stops once one
   * symbol is forgotten. Returns how many were.
   */
  sweep(room = false): number {
    const ttl = this.options.idleTtl;
    if (ttl === undefined) return 0;
    const idleBefore = this.options.now() - ttl;
    let forgotten = 0;
    for (const [symbol, writtenAt] of this.lastWritten) {
      if (writtenAt > idleBefore) break;
      this.lastWritten.delete(symbol);
      this.options.forget(symbol);
      forgotten++;
      if (room) break;
    }
    return forgotten;
  }
}
