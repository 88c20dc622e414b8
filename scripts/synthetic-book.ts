/** A full order book around `mid`: `levels` price levels per side, one cent apart, random quantities. */
export function syntheticBook(
  mid: number,
  levels: number,
): { bids: Record<string, number>; asks: Record<string, number> } {
  const bids: Record<string, number> = {};
  const asks: Record<string, number> = {};
  for (let i = 1; i <= levels; i++) {
    bids[(mid - i * 0.01).toFixed(2)] = Number((Math.random() * 5).toFixed(3));
    asks[(mid + i * 0.01).toFixed(2)] = Number((Math.random() * 5).toFixed(3));
  }
  return { bids, asks };
}
