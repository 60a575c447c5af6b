// The e2e suites run at the same time, each in its own sandbox (test/e2e/sandbox.sh). A sandbox's
// network slot comes from a hash of its name (cksum, modulo 63): two suites whose names share a
// slot would fight over one veth, one /30 and one apt-cacher-ng port. This keeps them apart.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FLEET_SANDBOXES } from './e2e/ssh-fleet';

const E2E = join(__dirname, 'e2e');

/** The slot sandbox.sh gives a name (0 for its default name). */
function slotOf(name: string): number {
  if (name === 'nsctl-sbx') return 0;
  const sum = Number(execFileSync('cksum', { input: name, encoding: 'utf8' }).split(' ')[0]);
  return 1 + (sum % 63);
}

test('every e2e suite has its own sandbox name and network slot', () => {
  const suites = readdirSync(E2E)
    .filter((f) => f.endsWith('.e2e.test.ts'))
    .flatMap((f) => [...readFileSync(join(E2E, f), 'utf8').matchAll(/new Sandbox\('([^']+)'\)/g)].map((m) => m[1]));
  expect(suites.length).toBeGreaterThanOrEqual(5);
  // The fleet suite's two sandboxes are named in its helper (test/e2e/ssh-fleet.ts); they run
  // beside the others. A suite that also names them itself (the fleet suite) counts them once.
  expect(FLEET_SANDBOXES.length).toBe(2);
  const names = [...suites, ...FLEET_SANDBOXES.filter((n) => !suites.includes(n))];
  const slots = names.map(slotOf);
  expect({ names: new Set(names).size, slots: new Set(slots).size }).toEqual({ names: names.length, slots: names.length });
  // The formula is sandbox.sh's own.
  expect(readFileSync(join(E2E, 'sandbox.sh'), 'utf8')).toContain(`SLOT=$(( 1 + $(printf '%s' "$NAME" | cksum | cut -d' ' -f1) % 63 ))`);
});
