// Asks each mirror a machine is about to be bootstrapped from whether it has the machine's suite
// (one HEAD request for MIRROR/dists/SUITE/Release per distinct mirror, suite and proxy), so a
// misspelt suite fails plan at once instead of minutes into a bootstrap. Only a plan that
// creates a machine asks: an unchanged host plans offline.
import { Document, isNode, LineCounter, parseDocument } from 'yaml';
import { MANIFEST_HINT, ManifestError, ManifestProblem, NspawnctlError, PreflightError } from '../errors';
import { Host } from '../host/host';
import { MAX_MANIFEST_BYTES } from '../manifest/load';
import { HttpError } from '../host/http';
import { closestSuite, DISTRIBUTION_TITLES, KNOWN_SUITES, suiteDistribution } from '../manifest/distributions';
import { BUILTIN_DEFAULTS, Machine, Manifest } from '../manifest/schema';
import { Plan } from './steps';

/** How long one mirror may take to answer (through its proxy, redirects included per request). */
export const ARCHIVE_CHECK_TIMEOUT_MS = 10_000;
const MAX_REDIRECTS = 5;

/** One archive some machines will be bootstrapped from. */
export interface ArchiveUse {
  mirror: string;
  suite: string;
  /** The machines' aptProxy, which the bootstrap will use too. */
  proxy?: string;
  machines: Machine[];
}

export type ArchiveAnswer =
  | { kind: 'found' }
  | { kind: 'missing'; url: string; status: number }
  | { kind: 'unreachable'; url: string; reason: string; via?: string };

/** The Release file that says a suite exists on a mirror. */
export function releaseUrl(mirror: string, suite: string): string {
  return `${mirror.replace(/\/+$/, '')}/dists/${suite}/Release`;
}

/** The distinct archives of the machines this plan creates, in the order they first appear. */
export function archivesToCheck(plan: Plan): ArchiveUse[] {
  const uses = new Map<string, ArchiveUse>();
  for (const step of plan.steps) {
    if (step.kind !== 'create-machine') continue;
    const { mirror, suite, aptProxy } = step.spec;
    const key = JSON.stringify([mirror, suite, aptProxy ?? null]);
    if (!uses.has(key)) uses.set(key, { mirror, suite, ...(aptProxy ? { proxy: aptProxy } : {}), machines: [] });
    uses.get(key)!.machines.push(step.spec);
  }
  return [...uses.values()];
}

/** Asks for one archive's Release file, following redirects as apt does. */
export async function askArchive(host: Host, use: ArchiveUse): Promise<ArchiveAnswer> {
  let url = releaseUrl(use.mirror, use.suite);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    let answer;
    try {
      answer = await host.http.head(url, { timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS, ...(use.proxy ? { proxy: use.proxy } : {}) });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      return { kind: 'unreachable', url, reason: err.reason, ...(err.via ? { via: err.via } : {}) };
    }
    const via = answer.via ? { via: answer.via } : {};
    if (answer.status >= 200 && answer.status < 300) return { kind: 'found' };
    if ([301, 302, 303, 307, 308].includes(answer.status) && answer.location) {
      try {
        url = new URL(answer.location, url).href;
      } catch {
        return { kind: 'unreachable', url, reason: `redirected to ${JSON.stringify(answer.location)}, which is not a URL`, ...via };
      }
      continue;
    }
    if (answer.status === 404 || answer.status === 410) return { kind: 'missing', url, status: answer.status };
    return { kind: 'unreachable', url, reason: `answered HTTP ${answer.status}`, ...via };
  }
  return { kind: 'unreachable', url, reason: `more than ${MAX_REDIRECTS} redirects` };
}

/**
 * Throws ManifestError (exit 2, located at the suite or mirror key to fix) when a mirror has no
 * such suite, or PreflightError (exit 3, naming the URL) when a mirror does not answer.
 */
export async function assertArchivesExist(host: Host, manifest: Manifest, plan: Plan): Promise<void> {
  const uses = archivesToCheck(plan);
  if (uses.length === 0) return;
  const answers = await Promise.all(uses.map((use) => askArchive(host, use)));
  const missing = uses.flatMap((use, i) => {
    const a = answers[i];
    return a.kind === 'missing' ? [{ use, answer: a }] : [];
  });
  if (missing.length > 0) throw await missingSuiteError(host, manifest, missing);
  const unreachable = uses.flatMap((use, i) => {
    const a = answers[i];
    return a.kind === 'unreachable' ? [{ use, answer: a }] : [];
  });
  if (unreachable.length > 0) {
    throw new PreflightError(
      unreachable.map(({ use, answer }) => ({
        what: `cannot reach ${answer.url}${answer.via ? ` through proxy ${answer.via}` : ''}: ${answer.reason} (needed to create ${machineList(use.machines)})`,
        fix: `Check the mirror URL and this host's network${use.proxy ? ` and the proxy ${use.proxy}` : ''}. Where the mirror is reached only through a proxy, set aptProxy in the manifest or the http_proxy environment variable.`,
      })),
    );
  }
}

type KeyPath = (string | number)[];

/** One located problem per manifest key at fault, whichever machines share it. */
async function missingSuiteError(host: Host, manifest: Manifest, missing: { use: ArchiveUse; answer: { url: string; status: number } }[]): Promise<NspawnctlError> {
  const doc = await readDocument(host, manifest.file);
  const problems = new Map<string, { path: KeyPath; message: string; machines: string[] }>();
  for (const { use, answer } of missing) {
    for (const m of use.machines) {
      // A codename nspawnctl knows for this distribution is right; then the mirror must be wrong.
      const key = suiteDistribution(use.suite) === m.distribution ? 'mirror' : 'suite';
      const { path, builtin } = originOf(doc, m, key);
      const id = path.join('.');
      if (!problems.has(id)) problems.set(id, { path, message: missingMessage(use, answer, m, key, builtin), machines: [] });
      problems.get(id)!.machines.push(m.name);
    }
  }
  const lines = [...problems.values()].map((p) => ({ ...p, message: p.path[0] === 'defaults' ? `${p.message} (used by ${machineList(p.machines)})` : p.message }));
  if (!doc) {
    // The manifest cannot be read again (it moved, or came from a pipe): named, not located.
    return new NspawnctlError(lines.map((l) => `${manifest.file}: ${formatPath(l.path)}: ${l.message}`).join('\n'), {
      exitCode: 2,
      hint: MANIFEST_HINT,
    });
  }
  const located: ManifestProblem[] = lines.map((l) => ({ file: manifest.file, ...positionOf(doc.doc, doc.lc, l.path), path: formatPath(l.path), message: l.message }));
  return new ManifestError(located.sort((a, b) => a.line - b.line || a.col - b.col));
}

function missingMessage(use: ArchiveUse, answer: { url: string; status: number }, m: Machine, key: 'suite' | 'mirror', builtin: boolean): string {
  const answered = `${answer.url} answered HTTP ${answer.status}`;
  if (key === 'suite') {
    const close = closestSuite(use.suite, m.distribution);
    const hint = close ? `did you mean ${close}?` : `${DISTRIBUTION_TITLES[m.distribution]} suites nspawnctl knows: ${KNOWN_SUITES[m.distribution].join(', ')}`;
    return `${use.suite} is not a suite of ${use.mirror} (${answered}); ${hint}`;
  }
  const which = builtin ? ` (the default ${m.distribution} mirror)` : '';
  return `${use.mirror}${which} has no suite ${use.suite} (${answered}); ${builtin ? 'set mirror to an archive that still has it (old releases move to archive.debian.org or old-releases.ubuntu.com)' : `check it is ${m.distribution === 'ubuntu' ? 'an' : 'a'} ${DISTRIBUTION_TITLES[m.distribution]} mirror, given as the directory that holds dists/`}`;
}

/**
 * Where a machine's suite or mirror is written: on the machine, in `defaults:` (for a machine of
 * defaults.distribution), or nowhere (the distribution's own; then the machine itself is named).
 */
function originOf(doc: ParsedManifest | undefined, m: Machine, key: 'suite' | 'mirror'): { path: KeyPath; builtin: boolean } {
  const own = ['machines', m.name, key];
  if (!doc) return { path: own, builtin: false };
  if (doc.doc.hasIn(own)) return { path: own, builtin: false };
  const defaultDistribution = doc.doc.getIn(['defaults', 'distribution']) ?? BUILTIN_DEFAULTS.distribution;
  if (defaultDistribution === m.distribution && doc.doc.hasIn(['defaults', key])) return { path: ['defaults', key], builtin: false };
  return { path: doc.doc.hasIn(['machines', m.name, 'distribution']) ? ['machines', m.name, 'distribution'] : ['machines', m.name], builtin: true };
}

interface ParsedManifest {
  doc: Document;
  lc: LineCounter;
}

async function readDocument(host: Host, file: string): Promise<ParsedManifest | undefined> {
  try {
    const lc = new LineCounter();
    const doc = parseDocument(await host.readInput(file, MAX_MANIFEST_BYTES), { lineCounter: lc, uniqueKeys: false });
    return doc.errors.length === 0 ? { doc, lc } : undefined;
  } catch {
    return undefined;
  }
}

function positionOf(doc: Document, lc: LineCounter, path: KeyPath): { line: number; col: number } {
  const node = doc.getIn(path, true);
  const range = isNode(node) ? node.range : undefined;
  return lc.linePos(range ? range[0] : 0);
}

function formatPath(path: KeyPath): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

function machineList(machines: (Machine | string)[]): string {
  const names = [...new Set(machines.map((m) => (typeof m === 'string' ? m : m.name)))].sort();
  return `${names.length === 1 ? 'machine' : 'machines'} ${names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0]}`;
}
