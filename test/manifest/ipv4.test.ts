// Overlapping subnets are found through CIDR containment instead of comparing every pair; the
// result must be what comparing every pair gives, limited to the earliest few.
import fc from 'fast-check';
import { blockSize, findEarlierOverlaps, Subnet, subnetsOverlap } from '../../src/manifest/ipv4';

/** Every pair compared: for each subnet, the earlier ones it overlaps. */
function bruteForce(subnets: Subnet[]): { index: number; earlier: number[] }[] {
  const out: { index: number; earlier: number[] }[] = [];
  subnets.forEach((s, i) => {
    const earlier = subnets.slice(0, i).flatMap((t, j) => (subnetsOverlap(s, t) ? [j] : []));
    if (earlier.length) out.push({ index: i, earlier });
  });
  return out;
}

// Small address space (10.0.0.0/16 and a few prefixes) so that overlaps are frequent.
const subnet = fc.record({ prefix: fc.constantFrom(14, 16, 20, 22, 24, 25, 30), at: fc.nat(0xffff) }).map(({ prefix, at }) => {
  const base = 0x0a000000 + at * 256;
  return { base: base - (base % blockSize(prefix)), prefix };
});

describe('findEarlierOverlaps', () => {
  test('agrees with comparing every pair (the earliest three, and whether there are more)', () => {
    fc.assert(
      fc.property(fc.array(subnet, { maxLength: 40 }), (subnets) => {
        const expected = bruteForce(subnets).map((o) => ({ index: o.index, earlier: o.earlier.slice(0, 3), more: o.earlier.length > 3 }));
        expect(findEarlierOverlaps(subnets)).toEqual(expected);
      }),
      { seed: 20261129, numRuns: 500 },
    );
  });

  test('nested and identical blocks: a /16 overlaps the /24s inside it, and identical blocks overlap each other', () => {
    const s = (text: string): Subnet => {
      const [ip, prefix] = text.split('/');
      const [a, b, c, d] = ip.split('.').map(Number);
      return { base: ((a << 24) >>> 0) + (b << 16) + (c << 8) + d, prefix: Number(prefix) };
    };
    expect(findEarlierOverlaps([s('10.0.0.0/24'), s('10.0.1.0/24'), s('10.0.0.0/16'), s('10.1.0.0/24'), s('10.0.1.0/24')])).toEqual([
      { index: 2, earlier: [0, 1], more: false },
      { index: 4, earlier: [1, 2], more: false },
    ]);
  });
});
