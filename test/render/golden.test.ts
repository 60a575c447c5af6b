// Golden files for the renderers: every fixtures/<case>/machines.yaml is rendered with
// renderDesiredState and compared with fixtures/<case>/expected/ and fixtures/<case>/desired.txt.
// UPDATE_GOLDEN=1 rewrites them on purpose; otherwise any difference fails. See fixtures/README.md.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseManifest } from '../../src/manifest/load';
import { DesiredEntry, DesiredState, renderDesiredState } from '../../src/render/desired';

const FIXTURES = join(__dirname, 'fixtures');
const REPO = join(__dirname, '..', '..');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
/** Fixed so that the generated headers ("from machines.yaml") are stable. */
const MANIFEST_NAME = 'machines.yaml';
const SYMLINK_SUFFIX = '.symlink';

const cases = readdirSync(FIXTURES)
  .filter((d) => statSync(join(FIXTURES, d)).isDirectory())
  .sort();

function allEntries(desired: DesiredState): DesiredEntry[] {
  return [...desired.networks.flatMap((n) => n.entries), ...desired.machines.flatMap((m) => [...m.hostEntries, ...m.rootfsEntries])];
}

/** The rendered tree as relative path -> file text, following the README's conventions. */
function renderTree(desired: DesiredState): Map<string, string> {
  const tree = new Map<string, string>();
  for (const e of allEntries(desired)) {
    if (!e.hostPath.startsWith('/')) throw new Error(`not a host-absolute path: ${e.hostPath}`);
    if (e.hostPath.endsWith(SYMLINK_SUFFIX)) throw new Error(`${e.hostPath} clashes with the symlink convention`);
    const rel = e.kind === 'symlink' ? `${e.hostPath.slice(1)}${SYMLINK_SUFFIX}` : e.hostPath.slice(1);
    if (tree.has(rel)) throw new Error(`two entries render ${e.hostPath}`);
    tree.set(rel, e.kind === 'symlink' ? `${e.target}\n` : e.content);
  }
  return tree;
}

/** What the file tree cannot show: order, kinds, modes, restart flags and the machine specs. */
function describeDesired(desired: DesiredState): string {
  const mode = (n: number | undefined) => (n === undefined ? '-' : `0${n.toString(8)}`);
  const entry = (e: DesiredEntry) =>
    e.kind === 'symlink'
      ? `  symlink ${e.hostPath} -> ${e.target} restart=${e.restart} inRootfs=${e.inRootfs} path=${e.path}`
      : `  file ${e.hostPath} mode=${mode(e.mode)} dirMode=${mode(e.dirMode)} restart=${e.restart} inRootfs=${e.inRootfs} path=${e.path}`;
  const lines: string[] = [];
  for (const n of desired.networks) {
    const net = n.network;
    lines.push(`network ${net.name} subnet=${net.subnetText} gateway=${net.gateway} nat=${net.nat}`, ...n.entries.map(entry));
  }
  for (const m of desired.machines) {
    const s = m.machine;
    lines.push(
      `machine ${s.name} rootfs=${m.rootfs} ${s.distribution} ${s.suite} ${s.mirror} variant=${s.variant} bootstrapper=${s.bootstrapper} autostart=${s.autostart}`,
      `  packages ${s.packages.join(' ')}`,
      `  provision ${JSON.stringify(s.provision)}`,
      ...m.hostEntries.map(entry),
      ...m.rootfsEntries.map(entry),
    );
  }
  return `${lines.join('\n')}\n`;
}

function readTree(dir: string, prefix = ''): Map<string, string> {
  const tree = new Map<string, string>();
  if (!existsSync(dir)) return tree;
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(full).isDirectory()) for (const [k, v] of readTree(full, rel)) tree.set(k, v);
    else tree.set(rel, readFileSync(full, 'utf8'));
  }
  return tree;
}

function writeTree(dir: string, tree: Map<string, string>): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [rel, text] of tree) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
}

test('the fixture cases are all there', () => {
  expect(cases).toEqual(['auto-upgrade', 'credentials', 'example', 'full-machine', 'health', 'nat-network', 'no-network', 'services', 'ubuntu']);
});

test('the example case is a copy of the repository root machines.example.yaml', () => {
  const source = join(REPO, 'machines.example.yaml');
  const copy = join(FIXTURES, 'example', MANIFEST_NAME);
  if (UPDATE) copyFileSync(source, copy);
  expect(readFileSync(copy, 'utf8')).toBe(readFileSync(source, 'utf8'));
});

test.each(cases)('%s renders exactly the golden tree', (name) => {
  const dir = join(FIXTURES, name);
  const manifest = parseManifest(MANIFEST_NAME, readFileSync(join(dir, MANIFEST_NAME), 'utf8'));
  const desired = renderDesiredState(manifest);
  const tree = renderTree(desired);
  const summary = describeDesired(desired);
  if (UPDATE) {
    writeTree(join(dir, 'expected'), tree);
    writeFileSync(join(dir, 'desired.txt'), summary);
  }
  expect(existsSync(join(dir, 'expected'))).toBe(true);
  const expected = readTree(join(dir, 'expected'));
  // Same set of files first (an extra or a missing file fails here), then each file's text.
  expect([...tree.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [rel, text] of tree) expect({ file: rel, text }).toEqual({ file: rel, text: expected.get(rel) });
  expect(summary).toBe(readFileSync(join(dir, 'desired.txt'), 'utf8'));
});

test('rendering is deterministic', () => {
  for (const name of cases) {
    const text = readFileSync(join(FIXTURES, name, MANIFEST_NAME), 'utf8');
    const a = renderTree(renderDesiredState(parseManifest(MANIFEST_NAME, text)));
    const b = renderTree(renderDesiredState(parseManifest(MANIFEST_NAME, text)));
    expect(a).toEqual(b);
  }
});
