// IPv4 arithmetic for subnets and addresses in the manifest (no dependency needed for /n math).

export interface Subnet {
  base: number;
  prefix: number;
}

/** Parses a dotted quad strictly ("010.0.0.1" and "1.2.3" are rejected); undefined if invalid. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Parses "10.77.0.0/24"; the address must be the network address itself. */
export function parseSubnet(text: string): Subnet | { error: string } {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  if (!m) return { error: 'expected a subnet like 10.77.0.0/24' };
  const base = parseIpv4(m[1]);
  const prefix = Number(m[2]);
  if (base === undefined) return { error: `${m[1]} is not an IPv4 address` };
  if (prefix < 8 || prefix > 30) return { error: 'prefix length must be between /8 and /30' };
  if (base % blockSize(prefix) !== 0) {
    return { error: `${m[1]} is not the network address of a /${prefix} (did you mean ${formatIpv4(base - (base % blockSize(prefix)))}/${prefix}?)` };
  }
  return { base, prefix };
}

export function blockSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

export function formatSubnet(s: Subnet): string {
  return `${formatIpv4(s.base)}/${s.prefix}`;
}

/** True for host addresses of the subnet (not its network or broadcast address). */
export function isHostAddress(s: Subnet, addr: number): boolean {
  return addr > s.base && addr < s.base + blockSize(s.prefix) - 1;
}

export function firstHost(s: Subnet): number {
  return s.base + 1;
}

export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  const aEnd = a.base + blockSize(a.prefix);
  const bEnd = b.base + blockSize(b.prefix);
  return a.base < bEnd && b.base < aEnd;
}

/** For one subnet of a list: the earliest subnets listed before it that overlap it. */
export interface EarlierOverlaps {
  index: number;
  /** Up to `limit` indices of earlier overlapping subnets, ascending. */
  earlier: number[];
  /** True when more earlier subnets overlap it than are listed. */
  more: boolean;
}

/**
 * Which subnets overlap one listed before them, without comparing every pair. Two CIDR blocks
 * overlap only when one contains the other, so the distinct blocks form a forest of at most 23
 * levels (/8 to /30); each subnet is checked against its block, the blocks above it, and the
 * earliest few entries below it.
 */
export function findEarlierOverlaps(subnets: Subnet[], limit = 3): EarlierOverlaps[] {
  interface Block { base: number; end: number; prefix: number; members: number[]; parent?: Block; lowest: number[] }
  const keep = limit + 2; // the earliest few, plus room for the subnet itself
  const byKey = new Map<string, Block>();
  const blockOf: Block[] = [];
  subnets.forEach((s, i) => {
    const key = `${s.base}/${s.prefix}`;
    let b = byKey.get(key);
    if (!b) {
      b = { base: s.base, end: s.base + blockSize(s.prefix), prefix: s.prefix, members: [], lowest: [] };
      byKey.set(key, b);
    }
    b.members.push(i);
    blockOf[i] = b;
  });
  // In address order, larger blocks first: every block comes after the blocks containing it.
  const blocks = [...byKey.values()].sort((a, b) => a.base - b.base || a.prefix - b.prefix);
  const open: Block[] = [];
  for (const b of blocks) {
    while (open.length > 0 && !(open[open.length - 1].base <= b.base && b.end <= open[open.length - 1].end)) open.pop();
    b.parent = open[open.length - 1];
    open.push(b);
  }
  // The earliest members of each block's subtree, gathered from the deepest blocks up.
  for (const b of blocks) b.lowest = b.members.slice(0, keep);
  for (let k = blocks.length - 1; k >= 0; k--) {
    const b = blocks[k];
    if (b.parent) b.parent.lowest = [...b.parent.lowest, ...b.lowest].sort((x, y) => x - y).slice(0, keep);
  }
  const out: EarlierOverlaps[] = [];
  subnets.forEach((_s, i) => {
    const candidates = [...blockOf[i].lowest];
    for (let a = blockOf[i].parent; a; a = a.parent) candidates.push(...a.members.slice(0, keep));
    const earlier = [...new Set(candidates.filter((c) => c < i))].sort((x, y) => x - y);
    if (earlier.length > 0) out.push({ index: i, earlier: earlier.slice(0, limit), more: earlier.length > limit });
  });
  return out;
}