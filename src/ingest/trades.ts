/**
 * The newest trades (or fills) of a symbol, newest first by `timestamp`, with the list's estimated size kept up to
 * date.
 */
import type { JsonObject } from '../merge-patch.ts';

export class TradeLists {
  /** The estimated size of each stored trade (with its separator), so a list's size is the sum of its trades'. */
  private readonly sizes = new WeakMap<JsonObject, number>();
  private readonly kept: number;
  /** The field that identifies an item: `trade_id`, `fill_id`. */
  private readonly idField: string;

  constructor(kept: number, idField = 'trade_id') {
    this.kept = kept;
    this.idField = idField;
  }

  /**
   * The list `previous` (of size `previousSize`) with `trade` (of size `tradeSize`) in its place: a trade with the
   * same id replaced, a late trade in its place rather than on top, at most `kept` trades. Undefined when nothing
   * changes (a trade older than every kept one, on a full list).
   */
  insert(
    previous: readonly JsonObject[],
    previousSize: number,
    trade: JsonObject,
    tradeSize: number,
  ): { list: JsonObject[]; size: number } | undefined {
    const tradeId = String(trade[this.idField]);
    // The list's size is kept up to date from its trades' sizes, not summed anew.
    let size = previous.length === 0 ? 2 : previousSize;
    const list: JsonObject[] = [];
    for (const old of previous) {
      if (String(old[this.idField]) === tradeId) size -= this.sizes.get(old) ?? 0;
      else list.push(old);
    }
    let index = 0;
    while (index < list.length && (list[index].timestamp as number) > (trade.timestamp as number)) index++;
    if (index >= this.kept) return undefined;
    this.sizes.set(trade, tradeSize + 1);
    list.splice(index, 0, trade);
    size += tradeSize + 1;
    for (let dropped = this.kept; dropped < list.length; dropped++)
      size -= this.sizes.get(list[dropped]) ?? 0;
    if (list.length > this.kept) list.length = this.kept;
    return { list, size };
  }
}
