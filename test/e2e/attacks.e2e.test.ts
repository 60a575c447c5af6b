// A machine's root attacks the host through nspawnctl, in the disposable systemd host: static
// symlinks in place of directories nspawnctl writes into, a symlink exchanged with a directory in
// a loop while apply runs, an apt hook planted in the machine, a FIFO where a file is read, a
// network named like the host's uplink, foreign files in the image cache, and a secret passed as a
// credential. The test host plays the machine's root: it changes the running machine's rootfs
// directly, which is exactly what root inside the machine can do. Every scenario ends by checking
// that no file of the test host outside the machine's rootfs changed.
import { e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-atk');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void, timeoutMs?: number) => timedTest(timings, name, fn, timeoutMs);

const ROOTFS = '/var/lib/machines/victim';
const MANIFEST = '/srv/att/m.yaml';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz0yLmn4Zs5BvT4NKrGmQ4dS3ffsXrl4S2Vt2vUoQ6H';
/** Files of the test host an attack aims at, and what they hold. */
const HOST_KEYS = 'ssh-ed25519 AAAA-the-host-admins-own-key admin@host\n';
const HOST_APP = 'the host application config\n';

interface Shape {
  stage: number;
  dns?: boolean;
  env?: boolean;
  keys?: boolean;
  appFile?: boolean;
  /** The app file's content (by default it follows the stage). */
  app?: string;
  packages?: string[];
  second?: boolean;
  credential?: string;
}

function manifest(proxy: string, s: Shape): string {
  const victim = [
    '  victim:',
    '    network: { bridge: attnet, address: 10.79.0.11 }',
    ...(s.dns === false ? [] : [`    dns: [10.79.0.1${s.stage > 1 ? ', 10.79.0.2' : ''}]`]),
    ...(s.env === false ? [] : [`    environment: { STAGE: "${s.stage}" }`]),
    ...(s.keys === false ? [] : [`    authorizedKeys: ["${KEY} stage${s.stage}"]`]),
    ...(s.appFile === false ? [] : ['    files:', `      - { path: /etc/app/app.conf, content: "${s.app ?? `machine config ${s.stage}`}\\n" }`]),
    ...(s.packages?.length ? [`    packages: [${s.packages.join(', ')}]`] : []),
    ...(s.credential ? [`    credentials: { dbpass: ${s.credential} }`] : []),
  ];
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    '  security: { preset: strict }',
    'networks:',
    '  attnet: { subnet: 10.79.0.0/24, nat: true }',
    'machines:',
    ...victim,
    ...(s.second ? ['  second:', '    network: { bridge: attnet, address: 10.79.0.12 }'] : []),
    '',
  ].join('\n');
}

/** The listing of the test host, leaving out what nspawnctl legitimately changes here. */
function hostFiles(): string[] {
  return sb.hostListing(['/var/lib/nspawnctl', '/srv/att', '/var/cache/nspawnctl']);
}

/** The paths whose entry differs between two listings, sorted. */
function changedPaths(before: string[], after: string[]): string[] {
  return [...new Set(changed(before, after).map((l) => l.slice(2).split(' ')[0]))].sort();
}

/** Compares two listings and names what differs (empty when nothing did). */
function changed(before: string[], after: string[]): string[] {
  const a = new Set(before);
  const b = new Set(after);
  return [...before.filter((l) => !b.has(l)).map((l) => `- ${l}`), ...after.filter((l) => !a.has(l)).map((l) => `+ ${l}`)];
}

function running(): string[] {
  return inHost(['machinectl', 'list', '--no-legend', '--no-pager']).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean).sort();
}

function leader(name: string): string {
  return inHost(['machinectl', 'show', name, '--property=Leader', '--value']).stdout.trim();
}

function ns(pid: string, kind: 'net' | 'user'): string {
  return inHost(['readlink', `/proc/${pid}/ns/${kind}`]).stdout.trim();
}

/** Runs a command inside the machine as a service of its own systemd. */
function inMachine(machine: string, argv: string[]) {
  return inHost(['systemd-run', `--machine=${machine}`, '--wait', '--pipe', '--quiet', '--collect', '--', ...argv], { check: false, timeoutMs: 120_000 });
}

e2eSuite('attacks from a machine root through nspawnctl', () => {
  let proxy = '';
  const write = (s: Shape) => sb.write(MANIFEST, manifest(proxy, s));
  const apply = () => nspawnctl(['apply', MANIFEST], { check: false });

  beforeAll(() => {
    proxy = sb.up();
    inHost(['mkdir', '-p', '/srv/att', '/root/.ssh', '/etc/attack-target']);
    sb.write('/root/.ssh/authorized_keys', HOST_KEYS);
    inHost(['chmod', '600', '/root/.ssh/authorized_keys']);
    sb.write('/etc/attack-target/app.conf', HOST_APP);
    write({ stage: 1 });
    const r = apply();
    expect({ code: r.code, err: r.stderr.slice(-2000) }).toEqual({ code: 0, err: expect.any(String) });
    expect(running()).toEqual(['victim']);
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('0. records are 0600 in a 0700 directory; a re-apply is a no-op', () => {
    expect(inHost(['stat', '-c', '%a', '/var/lib/nspawnctl/machines', '/var/lib/nspawnctl/machines/victim.json']).stdout).toBe('700\n600\n');
    expect(JSON.parse(nspawnctl(['plan', MANIFEST, '--json']).stdout).changes).toBe(false);
  });

  // Each directory inside the machine is replaced by a symlink to the host directory of the same
  // role; then the manifest changes a file in it, then drops that file. Neither may reach the host.
  const symlinkCases: { name: string; dir: string; target: string; change: Shape; drop: Shape; guard: [string, string] }[] = [
    {
      name: "a generated file's directory (/etc/systemd/network)",
      dir: '/etc/systemd/network',
      target: '/etc/systemd/network',
      change: { stage: 2 },
      drop: { stage: 2, dns: false },
      guard: ['/etc/systemd/network/50-nspawnctl-attnet.network', ''],
    },
    { name: '/etc/systemd', dir: '/etc/systemd', target: '/etc/systemd', change: { stage: 3, dns: false }, drop: { stage: 3, dns: false, env: false }, guard: ['/etc/systemd/system.conf', ''] },
    { name: '/root/.ssh', dir: '/root/.ssh', target: '/root/.ssh', change: { stage: 4, dns: false, env: false }, drop: { stage: 4, dns: false, env: false, keys: false }, guard: ['/root/.ssh/authorized_keys', HOST_KEYS] },
    {
      name: 'a files: directory (/etc/app)',
      dir: '/etc/app',
      target: '/etc/attack-target',
      change: { stage: 5, dns: false, env: false, keys: false },
      drop: { stage: 5, dns: false, env: false, keys: false, appFile: false },
      guard: ['/etc/attack-target/app.conf', HOST_APP],
    },
  ];

  for (const c of symlinkCases) {
    timed(`1. static symlink: ${c.name} -> host ${c.target}, then changed, then removed`, () => {
      const guardBefore = inHost(['cat', c.guard[0]]).stdout;
      if (c.guard[1]) expect(guardBefore).toBe(c.guard[1]);
      const before = hostFiles();
      inHost(['mv', `${ROOTFS}${c.dir}`, `${ROOTFS}${c.dir}.real`]);
      inHost(['ln', '-s', c.target, `${ROOTFS}${c.dir}`]);
      for (const shape of [c.change, c.drop]) {
        write(shape);
        const r = apply();
        // victim is the only machine with work: it is left alone and nothing else changes.
        expect({ code: r.code, says: r.stderr.includes(`${ROOTFS}${c.dir} is a symlink`), err: r.code === 4 ? '' : r.stderr }).toEqual({ code: 4, says: true, err: '' });
      }
      expect(inHost(['cat', c.guard[0]]).stdout).toBe(guardBefore);
      expect(changed(before, hostFiles())).toEqual([]);
      // The machine's root removes its symlink; the next apply converges.
      inHost(['rm', `${ROOTFS}${c.dir}`]);
      inHost(['mv', `${ROOTFS}${c.dir}.real`, `${ROOTFS}${c.dir}`]);
      const fixed = apply();
      expect({ code: fixed.code, err: fixed.code === 0 ? '' : fixed.stderr }).toEqual({ code: 0, err: '' });
    });
  }

  timed('2. the race: /etc/app exchanged with a symlink to a host directory in a loop for 20 s, during at least 20 re-applies', () => {
    write({ stage: 6 });
    expect(apply().code).toBe(0);
    const before = hostFiles();
    inHost(['ln', '-s', '/etc/attack-target', `${ROOTFS}/etc/app-swap`]);
    // renameat2(AT_FDCWD, A, AT_FDCWD, B, RENAME_EXCHANGE) in a loop, as the machine's root would.
    const perl = 'chdir $ARGV[0] or die; my ($x, $y) = ("etc/app", "etc/app-swap"); while (1) { syscall(316, -100, $x, -100, $y, 2) }';
    const pid = inHost(['sh', '-c', `perl -e '${perl}' ${ROOTFS} </dev/null >/dev/null 2>&1 & echo $!`]).stdout.trim();
    expect(pid).toMatch(/^\d+$/);
    const codes: number[] = [];
    const started = Date.now();
    try {
      // Alternately write a new content and remove the entry, so both writes and unlinks race.
      // Only that file changes: nothing else of the machine, so it is never restarted meanwhile.
      for (let i = 0; codes.length < 20 || Date.now() - started < 20_000; i++) {
        write(i % 2 === 0 ? { stage: 6, app: `race ${i}` } : { stage: 6, appFile: false });
        codes.push(apply().code);
        expect(inHost(['kill', '-0', pid], { check: false }).code).toBe(0);
      }
    } finally {
      inHost(['kill', pid], { check: false });
    }
    process.stderr.write(`[e2e] race: ${codes.length} applies in ${((Date.now() - started) / 1000).toFixed(1)} s, exit codes ${JSON.stringify(countBy(codes))}\n`);
    // Every run ended cleanly: done, failed for that machine, or left it alone for a conflict.
    expect(codes.filter((c) => ![0, 1, 4].includes(c))).toEqual([]);
    // Both sides of the race were hit: some applies got through, some were refused.
    expect({ someApplied: codes.includes(0), someRefused: codes.some((c) => c !== 0) }).toEqual({ someApplied: true, someRefused: true });
    expect(inHost(['ls', '-A', '/etc/attack-target']).stdout).toBe('app.conf\n');
    expect(inHost(['cat', '/etc/attack-target/app.conf']).stdout).toBe(HOST_APP);
    expect(changed(before, hostFiles())).toEqual([]);
    // Put the directory back where it was, whichever name it has now.
    inHost(['sh', '-c', `cd ${ROOTFS}/etc && if [ -L app ]; then rm app && mv app-swap app; else rm app-swap; fi`]);
    write({ stage: 7 });
    expect(apply().code).toBe(0);
  }, 600_000);

  timed('3. an apt hook planted in the machine runs only inside it: its namespaces and cgroup; the host network is unchanged', () => {
    const hook = [
      'APT::Update::Pre-Invoke {',
      `  "sh -c '(readlink /proc/self/ns/net; readlink /proc/self/ns/user; cat /proc/self/cgroup) > /etc/nspawnctl-hook-evidence; ip link add nsctlevil type dummy; setsid sleep 31337 </dev/null >/dev/null 2>&1 &'";`,
      '};',
      '',
    ].join('\n');
    sb.write(`${ROOTFS}/etc/apt/apt.conf.d/00nspawnctl-test-hook`, hook);
    const linksBefore = inHost(['ip', '-o', 'link', 'show']).stdout.split('\n').map((l) => l.split(':')[1]?.trim()).filter(Boolean).sort();
    const before = hostFiles();
    write({ stage: 7, packages: ['bc'] });
    const r = apply();
    expect({ code: r.code, err: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, err: '' });
    expect(inMachine('victim', ['sh', '-c', 'echo 6*7 | bc']).stdout).toBe('42\n');

    const machine = leader('victim');
    const evidence = inHost(['cat', `${ROOTFS}/etc/nspawnctl-hook-evidence`]).stdout.split('\n');
    // The hook ran (it wrote its evidence), in the machine's network and user namespaces.
    expect({ net: evidence[0], user: evidence[1] }).toEqual({ net: ns(machine, 'net'), user: ns(machine, 'user') });
    expect(evidence[0]).not.toBe(ns('1', 'net'));
    // Whatever it left behind is the machine's: its namespaces and its unit's cgroup.
    const left = inHost(['pgrep', '-x', '-f', 'sleep 31337'], { check: false }).stdout.split('\n').filter(Boolean);
    for (const pid of left) {
      expect({ pid, net: ns(pid, 'net'), user: ns(pid, 'user') }).toEqual({ pid, net: ns(machine, 'net'), user: ns(machine, 'user') });
      expect(inHost(['cat', `/proc/${pid}/cgroup`]).stdout).toContain('systemd-nspawn@victim.service');
    }
    process.stderr.write(`[e2e] hook: ${left.length} marker process(es) left, all inside the machine\n`);
    const linksAfter = inHost(['ip', '-o', 'link', 'show']).stdout.split('\n').map((l) => l.split(':')[1]?.trim()).filter(Boolean).sort();
    expect(linksAfter).toEqual(linksBefore);
    expect(changed(before, hostFiles())).toEqual([]);
    inHost(['rm', '-f', `${ROOTFS}/etc/apt/apt.conf.d/00nspawnctl-test-hook`, `${ROOTFS}/etc/nspawnctl-hook-evidence`]);
  });

  timed('4. a FIFO at /etc/hostname does not hang plan, and a second machine is still created', () => {
    inHost(['sh', '-c', `rm ${ROOTFS}/etc/hostname && mkfifo ${ROOTFS}/etc/hostname`]);
    write({ stage: 7, packages: ['bc'], second: true });
    const before = hostFiles();
    // A hang would end in the exec's timeout and fail here.
    const plan = sb.nspawnctl(['plan', MANIFEST, '--json'], { timeoutMs: 60_000 });
    const json = JSON.parse(plan.stdout);
    expect(json.conflicts.map((c: { owner: { name: string }; message: string }) => [c.owner.name, c.message])).toEqual([
      ['victim', `${ROOTFS}/etc/hostname is a special file; nspawnctl will not replace it`],
    ]);
    expect(json.steps.some((s: { kind: string; machine?: string }) => s.kind === 'create-machine' && s.machine === 'second')).toBe(true);
    const r = nspawnctl(['apply', MANIFEST], { check: false, timeoutMs: 600_000 });
    expect({ code: r.code, victimLeftAlone: r.stderr.includes('machine victim: left alone, conflict:') }).toEqual({ code: 1, victimLeftAlone: true });
    expect(running()).toEqual(['second', 'victim']);
    expect(sb.pingUntilAnswered('10.79.0.12')).toBe(true);
    // On the host, only the new machine's own settings file appeared.
    expect(changedPaths(before, hostFiles())).toEqual(['/etc/systemd/nspawn', '/etc/systemd/nspawn/second.nspawn']);
    inHost(['rm', `${ROOTFS}/etc/hostname`]);
    const fixed = apply();
    expect({ code: fixed.code, err: fixed.code === 0 ? '' : fixed.stderr }).toEqual({ code: 0, err: '' });
    expect(inHost(['cat', `${ROOTFS}/etc/hostname`]).stdout).toBe('victim\n');
  });

  timed("5. a network named like the host's uplink is refused (exit 4) and the uplink keeps its address", () => {
    const uplink = inHost(['ip', '-4', '-o', 'addr', 'show', 'dev', 'sbx0']).stdout;
    expect(uplink).toMatch(/inet 10\.199\.254\.\d+\/30/);
    sb.write('/srv/att/uplink.yaml', ['networks:', '  sbx0: { subnet: 10.81.0.0/24 }', 'machines: {}', ''].join('\n'));
    const before = hostFiles();
    const r = nspawnctl(['apply', '/srv/att/uplink.yaml'], { check: false });
    expect({ code: r.code, says: r.stderr.includes('a network interface named sbx0 already exists on this host and nspawnctl did not create it') }).toEqual({ code: 4, says: true });
    expect(inHost(['ip', '-4', '-o', 'addr', 'show', 'dev', 'sbx0']).stdout).toBe(uplink);
    expect(inHost(['test', '-e', '/etc/systemd/network/50-nspawnctl-sbx0.netdev'], { check: false }).code).not.toBe(0);
    expect(changed(before, hostFiles())).toEqual([]);
  });

  timed('5b. a secret passed as a credential: root in the machine reads it the systemd way; its value is nowhere in the rootfs, the host config, the records or the output', () => {
    const secret = `nspawnctl-secret-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const file = '/etc/nspawnctl/credentials/dbpass';
    inHost(['mkdir', '-p', '-m', '0700', '/etc/nspawnctl/credentials']);
    sb.write(file, `${secret}\n`);
    inHost(['chmod', '0644', file]);
    write({ stage: 7, packages: ['bc'], second: true, credential: file });
    // World-readable: refused before anything changes (exit 3), naming the file and the fix.
    const refused = nspawnctl(['plan', MANIFEST], { check: false });
    expect({ code: refused.code, says: refused.stderr.includes(`${file} is readable by every user on this host`) }).toEqual({ code: 3, says: true });
    inHost(['chmod', '0600', file]);
    const outputs = [nspawnctl(['plan', MANIFEST, '--json']), nspawnctl(['apply', MANIFEST, '--json'], { check: false }), nspawnctl(['plan', MANIFEST])];
    expect(outputs[1].code).toBe(0);
    // systemd-nspawn handed it to the machine's systemd; a service imports it with LoadCredential=.
    const read = inHost(['systemd-run', '--machine=victim', '--wait', '--pipe', '--quiet', '--collect', '--property=LoadCredential=dbpass', '--', 'sh', '-c', 'cat "$$CREDENTIALS_DIRECTORY/dbpass"'], { check: false });
    expect({ code: read.code, out: read.stdout, err: read.code === 0 ? '' : read.stderr }).toEqual({ code: 0, out: `${secret}\n`, err: '' });
    // Nowhere but in its own file: not in the rootfs, /etc/systemd, the records, or any output.
    const found = inHost(['grep', '-r', '-l', '-F', '--devices=skip', secret, ROOTFS, '/etc/systemd', '/var/lib/nspawnctl'], { check: false });
    expect({ code: found.code, files: found.stdout }).toEqual({ code: 1, files: '' });
    expect(outputs.filter((o) => `${o.stdout}${o.stderr}`.includes(secret))).toEqual([]);
  });

  timed('6. foreign files in the image cache survive cache prune --all', () => {
    const images = '/var/cache/nspawnctl/images';
    inHost(['sh', '-c', `mkdir -p ${images}/0123456789abcdef/rootfs ${images}/my-notes && echo mine > ${images}/README && echo keep > ${images}/my-notes/n && echo keep > ${images}/0123456789abcdef/rootfs/x`]);
    const ours = inHost(['ls', images]).stdout.split('\n').filter((n) => /^[0-9a-f]{16}$/.test(n) && n !== '0123456789abcdef');
    expect(ours.length).toBeGreaterThan(0);
    const r = nspawnctl(['cache', 'prune', '--all', '--json']);
    const out = JSON.parse(r.stdout);
    expect(out.removed.sort()).toEqual(ours.map((k) => `${images}/${k}`).sort());
    expect(inHost(['ls', '-A', images]).stdout.split('\n').filter(Boolean).sort()).toEqual(['0123456789abcdef', 'README', 'my-notes']);
    expect(inHost(['cat', `${images}/README`, `${images}/my-notes/n`, `${images}/0123456789abcdef/rootfs/x`]).stdout).toBe('mine\nkeep\nkeep\n');
  });

  timed('7. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});

function countBy(values: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
