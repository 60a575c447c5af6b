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
