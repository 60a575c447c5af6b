// `nspawnctl render --out DIR`: the manifest is read through the (fake) host, the files are written
// with the real filesystem under a temporary directory, and they match the render golden files.
// DIR must be new, empty or an earlier render (its marker file lists what it wrote); nothing is
// written through a symlink in it.
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Render from '../../src/commands/render';
import { createRealHost, Host } from '../../src/host/host';
import { FakeHost } from '../helpers/fake-host';
import { runCommand, TEST_CWD } from '../helpers/run-command';

const FIXTURES = join(__dirname, '..', 'render', 'fixtures');
const FIXTURE = join(FIXTURES, 'full-machine');
const MANIFEST = readFileSync(join(FIXTURE, 'machines.yaml'), 'utf8');
/** A second case with none of FIXTURE's files: re-rendered over FIXTURE's output, all of those are stale. */
const OTHER = join(FIXTURES, 'no-network');
const OTHER_MANIFEST = readFileSync(join(OTHER, 'machines.yaml'), 'utf8');
/** The marker file render keeps at the top of DIR. */
const MARKER = '.nspawnctl-render.json';
const NOT_OURS_HINT = 'hint: Render into a new or empty directory. Render replaces the files of its own earlier renders there, and only those.\n';

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

/** Every directory below `dir` (relative, sorted): empty ones included, which readTree cannot show. */
function readDirs(dir: string, prefix = ''): string[] {
  const dirs: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(dir, name));
    if (st.isDirectory() && !st.isSymbolicLink()) dirs.push(rel, ...readDirs(join(dir, name), rel));
  }
  return dirs.sort();
}

/** The directories a tree of files needs (every ancestor of every file), sorted. */
function dirsOf(files: Iterable<string>): string[] {
  const dirs = new Set<string>();
  for (const f of files) for (let d = f.split('/').slice(0, -1); d.length > 0; d = d.slice(0, -1)) dirs.add(d.join('/'));
  return [...dirs].sort();
}

/** The marker a render of golden tree `tree` leaves: every file it wrote, as a host path, sorted. */
function markerFor(tree: Map<string, string>): string {
  const files = [...tree.keys()].map((k) => `/${k.replace(/\.symlink$/, '')}`).sort();
  return `${JSON.stringify({ renderedBy: 'nspawnctl', files }, null, 2)}\n`;
}

/** readTree without the marker, after checking the marker lists exactly the golden tree `expected`. */
function readRenderedTree(dir: string, expected: Map<string, string>): Map<string, string> {
  const tree = readTree(dir);
  expect(tree.get(MARKER)).toBe(markerFor(expected));
  tree.delete(MARKER);
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
    // Exactly the golden tree, plus the marker listing it (checked exactly in readRenderedTree).
    expect(readRenderedTree(out, expected)).toEqual(expected);
    expect(readdirSync(out)).toEqual([MARKER, 'etc', 'var']);
    const mode = (p: string) => lstatSync(join(out, p)).mode & 0o7777;
    expect(mode(MARKER)).toBe(0o644);
    expect(mode('var/lib/machines/app/etc/app/app.conf')).toBe(0o640);
    expect(mode('var/lib/machines/app/root/.ssh/authorized_keys')).toBe(0o600);
    expect(mode('var/lib/machines/app/root/.ssh')).toBe(0o700);
    expect(mode('etc/systemd/nspawn/app.nspawn')).toBe(0o644);

    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(expected.size + 1);
    expect(lines).toContain(`wrote     ${out}/etc/systemd/nspawn/app.nspawn`);
    expect(lines).toContain(`wrote     ${out}/var/lib/machines/app/etc/systemd/system/sockets.target.wants/systemd-networkd.socket`);
    expect(lines.every((l, i) => i === lines.length - 1 || l.startsWith('wrote     '))).toBe(true);
    expect(lines[lines.length - 1]).toBe(`${expected.size} file(s), ${expected.size} written (${out}: was empty).`);
    // Nothing ran and the fake host was only read from.
    expect(input.runner.calls).toEqual([]);
    expect(input.fs.changes).toEqual([]);

    const again = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(again.exitCode).toBe(0);
    const againLines = again.stdout.trimEnd().split('\n');
    expect(againLines).toHaveLength(expected.size + 1);
    expect(againLines.slice(0, -1).every((l) => l.startsWith('unchanged '))).toBe(true);
    expect(againLines[againLines.length - 1]).toBe(`${expected.size} file(s), 0 written (${out}: an earlier render, replaced).`);
    expect(readRenderedTree(out, expected)).toEqual(expected);
  });

  test("renders for the host it runs on: with systemd-resolved's stub in /etc/resolv.conf, machines copy resolved's upstream list", async () => {
    const input = new FakeHost({ uid: 1000, inputs: { 'machines.yaml': readFileSync(join(FIXTURES, 'nat-network', 'machines.yaml'), 'utf8') } });
    input.fs.addFile('/etc/resolv.conf', 'nameserver 127.0.0.53\n');
    input.fs.addFile('/run/systemd/resolve/resolv.conf', 'nameserver 192.0.2.1\n');
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.exitCode).toBe(0);
    const golden = readFileSync(join(FIXTURES, 'nat-network', 'expected', 'etc', 'systemd', 'nspawn', 'proxy.nspawn'), 'utf8');
    expect(golden).toContain('\nResolvConf=copy-host\n');
    expect(readFileSync(join(out, 'etc', 'systemd', 'nspawn', 'proxy.nspawn'), 'utf8')).toBe(golden.replace('\nResolvConf=copy-host\n', '\nResolvConf=copy-uplink\n'));
  });

  test('--json lists every file and what was written', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out, '--json']);
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.out).toBe(out);
    expect(json.before).toBe('empty');
    expect(json.files).toHaveLength(15);
    expect(json.files[0]).toBe('/etc/systemd/network/50-nspawnctl-lan.netdev');
    expect(json.written).toEqual(json.files);
    expect(json.removed).toEqual([]);
  });

  test('a directory that does not exist yet is created', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': OTHER_MANIFEST } });
    const dir = join(out, 'new', 'rendered');
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', dir]);
    expect(r.exitCode).toBe(0);
    const expected = readTree(join(OTHER, 'expected'));
    expect(r.stdout.trimEnd().split('\n').pop()).toBe(`${expected.size} file(s), ${expected.size} written (${dir}: created).`);
    expect(readRenderedTree(dir, expected)).toEqual(expected);
  });

  test('a re-render of another manifest removes the stale files of the earlier one, and the directories they leave empty; nothing else', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    expect((await runCommand(renderWith(input), ['machines.yaml', '--out', out])).exitCode).toBe(0);
    const first = readTree(join(FIXTURE, 'expected'));
    // The user's own files in the output directory: render never listed them, so they stay.
    writeFileSync(join(out, 'var/lib/machines/app/etc/notes.txt'), 'mine\n');
    writeFileSync(join(out, 'README'), 'mine too\n');

    input.inputs.set('machines.yaml', OTHER_MANIFEST);
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out, '--json']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    // Every file of the first render is stale: the two cases share none.
    const stale = [...first.keys()].map((k) => `/${k.replace(/\.symlink$/, '')}`).sort();
    expect(json.before).toBe('earlier render');
    expect(json.removed).toEqual(stale);
    expect(json.written).toEqual(json.files);

    const second = readTree(join(OTHER, 'expected'));
    const tree = readRenderedTree(out, second);
    expect(tree).toEqual(new Map([...second, ['README', 'mine too\n'], ['var/lib/machines/app/etc/notes.txt', 'mine\n']]));
    // Every directory left holds something: the stale files' directories went with them, up to
    // the first one still in use (var/lib/machines/app/etc holds the user's notes).
    expect(readDirs(out)).toEqual(dirsOf(tree.keys()));
    expect(readDirs(out)).toContain('var/lib/machines/app/etc');
    expect(readDirs(out)).not.toContain('var/lib/machines/app/root');
  });

  test('a marker edited to list paths outside the directory: those are ignored, nothing outside is removed', async () => {
    const dir = join(out, 'rendered');
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    expect((await runCommand(renderWith(input), ['machines.yaml', '--out', dir])).exitCode).toBe(0);
    writeFileSync(join(out, 'victim.txt'), 'keep\n');
    const marker = JSON.parse(readFileSync(join(dir, MARKER), 'utf8'));
    marker.files.push('/../victim.txt', '/etc/../../victim.txt', 'victim.txt');
    writeFileSync(join(dir, MARKER), JSON.stringify(marker));

    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', dir, '--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).removed).toEqual([]);
    expect(readFileSync(join(out, 'victim.txt'), 'utf8')).toBe('keep\n');
    const expected = readTree(join(FIXTURE, 'expected'));
    expect(readRenderedTree(dir, expected)).toEqual(expected);
  });

  test('a non-empty directory that no render wrote: exit 2, nothing written', async () => {
    writeFileSync(join(out, 'thesis.tex'), 'mine\n');
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nspawnctl: ${out} is not empty and was not written by nspawnctl render; nothing was written\n${NOT_OURS_HINT}`);
    expect(readTree(out)).toEqual(new Map([['thesis.tex', 'mine\n']]));
    expect(readDirs(out)).toEqual([]);
  });

  test('a marker that is not render\'s (unreadable JSON) makes the directory not an earlier render: exit 2, nothing written or removed', async () => {
    writeFileSync(join(out, MARKER), '{"files": ["/thesis.tex"]}\n');
    writeFileSync(join(out, 'thesis.tex'), 'mine\n');
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`nspawnctl: ${out} is not empty and was not written by nspawnctl render; nothing was written\n${NOT_OURS_HINT}`);
    expect(readTree(out)).toEqual(new Map([[MARKER, '{"files": ["/thesis.tex"]}\n'], ['thesis.tex', 'mine\n']]));
  });

  test('--out naming a symlink to a directory: exit 2, nothing written through it', async () => {
    const real = join(out, 'real');
    mkdirSync(real);
    symlinkSync('real', join(out, 'link'));
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', join(out, 'link')]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nspawnctl: ${join(out, 'link')} exists and is not a directory (it is a symlink; render never writes through one)\n`);
    expect(readdirSync(real)).toEqual([]);
  });

  test('--out naming a file: exit 2, the file untouched', async () => {
    writeFileSync(join(out, 'file'), 'mine\n');
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', join(out, 'file')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`nspawnctl: ${join(out, 'file')} exists and is not a directory\n`);
    expect(readFileSync(join(out, 'file'), 'utf8')).toBe('mine\n');
  });

  // Newcomer issue: a file on the way to DIR gave a raw "ENOTDIR: not a directory, mkdir" (exit 1).
  test('--out below a file (FILE/sub): exit 2 with a message, the file untouched', async () => {
    writeFileSync(join(out, 'file'), 'mine\n');
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', join(out, 'file', 'sub')]);
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({
      exitCode: 2,
      stderr: `nspawnctl: cannot create ${join(out, 'file', 'sub')}: a component of its path is a file, not a directory\n`,
    });
    expect(readFileSync(join(out, 'file'), 'utf8')).toBe('mine\n');
  });

  test('a symlink inside an earlier render (etc -> elsewhere): exit 2, nothing written through it or anywhere else', async () => {
    const dir = join(out, 'rendered');
    const elsewhere = join(out, 'elsewhere');
    mkdirSync(elsewhere);
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    expect((await runCommand(renderWith(input), ['machines.yaml', '--out', dir])).exitCode).toBe(0);
    rmSync(join(dir, 'etc'), { recursive: true });
    symlinkSync('../elsewhere', join(dir, 'etc'));
    const before = readTree(dir);

    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', dir]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `nspawnctl: ${dir}/etc is a symlink: nspawnctl will not follow or use it; nothing more was written\nhint: Render into a new or empty directory.\n`,
    );
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(readTree(dir)).toEqual(before);
    expect(lstatSync(join(dir, 'etc')).isSymbolicLink()).toBe(true);
  });

  test('a bad manifest exits 2 and writes nothing', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': 'machines:\n  web:\n    ports: [{ host: 80 }]\n' } });
    const r = await runCommand(renderWith(input), ['machines.yaml', '--out', out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('machines.yaml:3:12: machines.web.ports: ports need a network (a machine without network: has only loopback)\nhint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n');
    expect(readdirSync(out)).toEqual([]);
  });

  test('--out is required', async () => {
    const input = new FakeHost({ inputs: { 'machines.yaml': MANIFEST } });
    const r = await runCommand(renderWith(input), ['machines.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.error?.message).toContain('Missing required flag out');
  });
});
