/**
 * Contenders take turns: `run(index)` for each of `count` contenders, `turns`
 * times, in an order that rotates every turn, so none always goes first or
 * last while the machine warms up or gets busy.
 */
export async function inTurns(
  count: number,
  turns: number,
  run: (index: number) => Promise<void>,
): Promise<void> {
  for (let turn = 0; turn < turns; turn++) {
    for (let i = 0; i < count; i++) await run((i + turn) % count);
  }
}
