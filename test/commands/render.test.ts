// `nspawnctl render --out DIR`: the manifest is read through the (fake) host, the files are written
// with the real filesystem under a temporary directory, and they match the render golden files.
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Render from '../../src/commands/render';
import { createRealHost, Host } from '../../src/host/host';
import { FakeHost } from '../helpers/fake-host';
import { runCommand, TEST_CWD } from '../helpers/run-command';

const FIXTURE = join(__dirname, '..', 'render', 'fixtures', 'full-machine');
const MANIFEST = readFileSync(join(FIXTURE, 'machines.yaml'), 'utf8');

/** The manifest comes from the fake host; the output directory is the real filesystem. */
const renderWith = (input: FakeHost) =>
  class extends Render {
    protected override createHost(root = '/'): Host {
      return root === '/' ? input : createRealHost(root);
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** A directory as relative path -> text, symlinks as `<path>.symlink` (the golden convention). */
function readTree(dir: string, prefix = ''): Map<string, string> {
  const tree = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(full);
    if (st.isSymbolicLink()) tree.set(`${rel}.symlink`, `${readlinkSync(full)}\n`);
    else if (st.isDirectory()) for (const [k, v] of readTree(full, rel)) tree.set(k, v);
    else tree.set(rel, readFileSync(full, 'utf8'));
  }
  return tree;
}

describe('nspawnctl render', () => {
  let out: string;
  beforeEach(() => {
    out = mkdtempSync(join(tmpdir(), 'nspawnctl-render-'));
  });
  afterEach(() => {
    rmSync(out, { recursive: true, force: true });
  });

  test('--out writes exactly the golden tree with the right modes, and a second run writes nothing', async () => {
    const input = new FakeHost({ uid: 1000, inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');

    const expected = readTree(join(FIXTURE, 'expected'));
    expect(readTree(out)).toEqual(expected);
    const mode = (p: string) => lstatSync(join(out, p)).mode & 0o7777;
    expect(mode('var/lib/machines/app/etc/app/app.conf')).toBe(0o640);
    expect(mode('var/lib/machines/app/root/.ssh/authorized_keys')).toBe(0o600);
    expect(mode('var/lib/machines/app/root/.ssh')).toBe(0o700);
    expect(mode('etc/systemd/nspawn/app.nspawn')).toBe(0o644);

    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(expected.size + 1);
    expect(lines).toContain(`wrote     ${out}/etc/systemd/nspawn/app.nspawn`);
    expect(lines).toContain(`wrote     ${out}/var/lib/machines/app/etc/systemd/system/sockets.target.wants/systemd-networkd.socket`);
    expect(lines.every((l, i) => i === lines.length - 1 || l.startsWith('wrote     '))).toBe(true);
    expect(lines[lines.length - 1]).toBe(`${expected.size} file(s), ${expected.size} written.`);
    // Nothing ran and the fake host was only read from.
    expect(input.runner.calls).toEqual([]);
    expect(input.fs.changes).toEqual([]);

    const again = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(again.exitCode).toBe(0);
    const againLines = again.stdout.trimEnd().split('\n');
    expect(againLines.slice(0, -1).every((l) => l.startsWith('unchanged '))).toBe(true);
    expect(againLines[againLines.length - 1]).toBe(`${expected.size} file(s), 0 written.`);
  });

  test('--json lists every file and what was written', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out, '--json']);
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.out).toBe(out);
    expect(json.files).toHaveLength(15);
    expect(json.files[0]).toBe('/etc/systemd/network/50-nspawnctl-lan.netdev');
    expect(json.written).toEqual(json.files);
  });

  test('a bad manifest exits 2 and writes nothing', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': 'machines:\n  web:\n    ports: [{ host: 80 }]\n' } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('machines.yaml:3:12: machines.web.ports: ports need a network (a machine without network: has only loopback)\nhint: Fix the manifest; nothing on the host was changed. See docs/manifest.md.\n');
    expect(readdirSync(out)).toEqual([]);
  });

  test('--out is required', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.error?.message).toContain('Missing required flag out');
  });
});
