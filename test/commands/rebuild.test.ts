// `nspawnctl rebuild` and `nspawnctl rollback` through oclif with a fake Host: the manifest the
// machine was applied from is the default, pending host changes stop rebuild before anything is
// built, and the downtime is printed.
import Apply from '../../src/commands/apply';
import Rebuild from '../../src/commands/rebuild';
import Rollback from '../../src/commands/rollback';
import { Host } from '../../src/host/host';
import { previousRootfsPath } from '../../src/host/paths';
import { convergeFakeHost, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const MANIFEST = `networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
    files:
      - { path: /etc/motd, content: "v1\\n" }
`;

function withHost<T extends typeof Rebuild | typeof Rollback | typeof Apply>(Cmd: T, host: Host): T {
  return class extends (Cmd as typeof Rebuild) {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  } as unknown as T;
}

function appliedHost(manifestText: string): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { [MANIFEST_PATH]: manifestText } }));
  simulateSystemd(host, { running: ['web'], bridges: ['br0'] });
  convergeFakeHost(host, desiredFrom(MANIFEST).desired, { queries: false });
  host.fs.addFile('/var/lib/machines/web/marker', 'old\n');
  return host;
}

describe('nspawnctl rebuild', () => {
  test('without --yes and without a terminal it refuses (exit 2) and changes nothing', async () => {
    const host = appliedHost(MANIFEST);
    const isTTY = Object.getOwnPropertyDescriptor(process.stdin, 'isTTY');
    Object.defineProperty(process.stdin, 'isTTY', { value: false, configurable: true });
    try {
      const r = await runCommand(withHost(Rebuild, host), ['web']);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toBe('nspawnctl: refusing to rebuild web without --yes (stdin is not a terminal)\n');
    } finally {
      if (isTTY) Object.defineProperty(process.stdin, 'isTTY', isTTY);
      else delete (process.stdin as { isTTY?: boolean }).isTTY;
    }
    expect(host.fs.changes).toEqual([]);
  });

  test('rebuilds from the manifest the machine was applied from and prints the downtime', async () => {
    const host = appliedHost(MANIFEST.replace('v1', 'v2'));
    const r = await runCommand(withHost(Rebuild, host), ['web', '--yes', '--no-cache']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Rebuilt web: downtime \d+\.\d s \(stop \d+\.\d s, start until ready \d+\.\d s\)\. The replaced root filesystem is kept at \/var\/lib\/machines\/\.nspawnctl-web\.previous \(nspawnctl rollback web swaps it back\)\.\n$/);
    expect(host.fs.nodes.has(`${previousRootfsPath('web')}/marker`)).toBe(true);
    expect(host.fs.nodes.has('/var/lib/machines/web/marker')).toBe(false);
    const back = await runCommand(withHost(Rollback, host), ['web']);
    expect(back.exitCode).toBe(0);
    expect(back.stdout).toMatch(/^Rolled back web: downtime /);
    expect(host.fs.nodes.has('/var/lib/machines/web/marker')).toBe(true);
  });

  test('changes outside the root filesystem stop it before anything is built (apply them first)', async () => {
    const host = appliedHost(MANIFEST.replace('10.0.0.2 }', '10.0.0.2 }\n    ports: [{ host: 8080, container: 80 }]'));
    const r = await runCommand(withHost(Rebuild, host), ['web', '--yes']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      'nspawnctl: machine web: the manifest has changes that rebuild does not make (it replaces the root filesystem only):\n  - update /etc/systemd/nspawn/web.nspawn\nhint: Apply them first: nspawnctl apply /srv/conf/machines.yaml\n',
    );
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap' || a[1] === 'poweroff')).toEqual([]);
  });

  test('a machine nspawnctl does not manage is an error', async () => {
    const host = appliedHost(MANIFEST);
    const r = await runCommand(withHost(Rebuild, host), ['ghost', '--yes']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('nspawnctl: no machine named ghost is managed by nspawnctl\n');
  });
});

describe('nspawnctl apply of a change only a rebuild brings', () => {
  const PROVISIONED = MANIFEST.replace('    files:', '    provision: [[touch, /provisioned]]\n    files:');

  test('without --yes and without a terminal it shows the plan and refuses (exit 2), changing nothing', async () => {
    const host = appliedHost(PROVISIONED);
    const isTTY = Object.getOwnPropertyDescriptor(process.stdin, 'isTTY');
    Object.defineProperty(process.stdin, 'isTTY', { value: false, configurable: true });
    try {
      const r = await runCommand(withHost(Apply, host), [MANIFEST_PATH, '--no-cache']);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain('~ machine web: rebuild\n    rebuild (provision commands changed); the old root filesystem is kept for rollback\n');
      expect(r.stderr).toContain('nspawnctl: refusing to apply: the plan rebuilds web (a fresh root filesystem; the old one is kept for rollback); run apply with --yes (stdin is not a terminal)\n');
    } finally {
      if (isTTY) Object.defineProperty(process.stdin, 'isTTY', isTTY);
      else delete (process.stdin as { isTTY?: boolean }).isTTY;
    }
    expect(host.fs.changes.filter((c) => !c.includes('/run/nspawnctl.lock'))).toEqual([]);
  });

  test('with --yes the machine is rebuilt: provision ran in the new root, the old one is the previous, the plan is then empty', async () => {
    const host = appliedHost(PROVISIONED);
    const r = await runCommand(withHost(Apply, host), [MANIFEST_PATH, '--no-cache', '--yes']);
    expect(r.exitCode).toBe(0);
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-nspawn').map((a) => a.slice(-2))).toEqual([['touch', '/provisioned']]);
    expect(host.runner.argvs().filter((a) => a[0] === 'machinectl' && ['poweroff', 'start'].includes(a[1]))).toEqual([
      ['machinectl', 'poweroff', 'web'],
      ['machinectl', 'start', 'web'],
    ]);
    expect(host.fs.nodes.has(`${previousRootfsPath('web')}/marker`)).toBe(true);
    expect(host.fs.nodes.has('/var/lib/machines/web/marker')).toBe(false);
    const again = await runCommand(withHost(Apply, host), [MANIFEST_PATH]);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toContain('No changes: the host matches machines.yaml.');
  });
});
