/**
 * Redis Cluster hash slots, computed the way the server does (CRC16/XMODEM
 * of the key's hash tag, modulo 16384), and the hash tags disref uses to put
 * a key into a chosen slot.
 *
 * Why a table of tags: a Cluster script may only touch keys of one slot, so
 * the data-loss marker a lock's acquire script checks must live in the lock's
 * own slot. Redis only requires the same *slot*, not the same tag, so one
 * marker per slot serves every lock of that slot: its key carries a tag
 * (`m:<base36>`) chosen to land in that slot. The tags are found by trying
 * `m:0`, `m:1`, ... in order and keeping the first one per slot, so every
 * process (and every disref version) derives the same key for a slot.
 * @module
 */

/** Number of hash slots of a Redis Cluster. */
export const SLOT_COUNT = 16_384;

let crcTable: Uint16Array | undefined;

/** CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster uses. */
export function crc16(bytes: Uint8Array): number {
  crcTable ??= makeCrcTable();
  let crc = 0;
  for (const byte of bytes) {
    crc = ((crc << 8) & 0xffff) ^ (crcTable[((crc >> 8) ^ byte) & 0xff] ?? 0);
  }
  return crc;
}

function makeCrcTable(): Uint16Array {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[i] = crc;
  }
  return table;
}

/**
 * The slot of `key`: the CRC16 of its hash tag (the text between the first
 * `{` and the next `}`, when that is not empty) or else of the whole key.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  const open = bytes.indexOf(0x7b); // '{'
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // '}'
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOT_COUNT;
  }
  return crc16(bytes) % SLOT_COUNT;
}

let slotTags: string[] | undefined;

/**
 * A short hash tag body (`m:<base36>`) whose slot is `slot`: the first of
 * `m:0`, `m:1`, ... that lands there. Computed for all slots on first use
 * (about 170 000 checksums of 3 to 6 bytes, a few milliseconds).
 */
export function slotTag(slot: number): string {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
    throw new RangeError(`disref: no hash slot ${String(slot)}; slots are 0 to 16383`);
  }
  slotTags ??= makeSlotTags();
  const tag = slotTags[slot];
  if (tag === undefined) throw new Error(`disref: no tag found for slot ${String(slot)}`);
  return tag;
}

function makeSlotTags(): string[] {
  const tags = new Array<string>(SLOT_COUNT);
  let missing = SLOT_COUNT;
  for (let i = 0; missing > 0; i++) {
    const tag = `m:${i.toString(36)}`;
    const slot = crc16(asciiBytes(tag)) % SLOT_COUNT;
    if (tags[slot] === undefined) {
      tags[slot] = tag;
      missing -= 1;
    }
  }
  return tags;
}

/** The bytes of an ASCII string, without the cost of a Buffer per call. */
function asciiBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
