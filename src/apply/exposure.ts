// Exposure scores of services inside a machine, from `systemd-analyze security` run inside it (the
// machine's own systemd rates its own units). What it prints is the machine's, so it is parsed
// strictly: only lines of the expected shape count, numbers must be scores (0.0 to 10.0), and
// every name is shown escaped.
import { escapeControl, NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { runInMachine, SHORT_TIMEOUT_MS } from './in-machine';

/** A score as systemd-analyze prints it: 0.0 (nothing exposed) to 10.0, and its word (OK, MEDIUM, UNSAFE ...). */
export interface Exposure {
  exposure: number;
  level: string;
}

/** One setting the service does not have, and how much of the score it accounts for. */
export interface ExposureItem {
  name: string;
  description: string;
  exposure: number;
}

export interface ServiceExposure extends Exposure {
  /** The unit name, like nginx.service (escaped). */
  unit: string;
  /** Unmet settings, the heaviest first. */
  unmet: ExposureItem[];
}

/** At most this many lines of the machine's output are looked at. */
const MAX_LINES = 5000;
const SCORE = '(\\d{1,2}\\.\\d)';
const LEVEL = '([A-Z]{2,12})';
// Unit names as the machine's systemd may spell them (escapes like \x2d included); shown escaped.
const UNIT = '([A-Za-z0-9_.:@\\\\-]{1,256}\\.service)';

function score(text: string): number | undefined {
  const n = Number(text);
  return Number.isFinite(n) && n >= 0 && n <= 10 ? n : undefined;
}

function lines(text: string): string[] {
  return text.split('\n').slice(0, MAX_LINES);
}

/** The rows of `systemd-analyze security` without units: UNIT EXPOSURE PREDICATE HAPPY. */
export function parseSecurityTable(text: string): ({ unit: string } & Exposure)[] {
  const row = new RegExp(`^${UNIT}\\s+${SCORE}\\s+${LEVEL}(?:\\s|$)`);
  const out: ({ unit: string } & Exposure)[] = [];
  const seen = new Set<string>();
  for (const line of lines(text)) {
    const m = row.exec(line);
    const exposure = m ? score(m[2]) : undefined;
    if (!m || exposure === undefined || seen.has(m[1])) continue;
    seen.add(m[1]);
    out.push({ unit: escapeControl(m[1]), exposure, level: m[3] });
  }
  return out;
}

/**
 * The overall score of one unit and its unmet settings, from `systemd-analyze security UNIT`;
 * undefined when no overall line for that unit is there. Unmet settings are the ✗ rows (x or -
 * where the machine's locale has no Unicode) with an exposure.
 */
export function parseSecurityDetail(text: string, unit: string): Omit<ServiceExposure, 'unit'> | undefined {
  let overall: Exposure | undefined;
  const unmet: ExposureItem[] = [];
  const item = /^(?:\u2717|x|-) (\S{1,120})\s+(\S.{0,300}?)\s+(\d{1,2}\.\d)\s*$/;
  const total = new RegExp(`^(?:\u2192|->) Overall exposure level for ${UNIT}: ${SCORE} ${LEVEL}(?:\\s|$)`);
  for (const line of lines(text)) {
    const t = total.exec(line);
    if (t) {
      const exposure = score(t[2]);
      if (t[1] === unit && exposure !== undefined) overall = { exposure, level: t[3] };
      continue;
    }
    const m = item.exec(line);
    const exposure = m ? score(m[3]) : undefined;
    if (m && exposure !== undefined) unmet.push({ name: escapeControl(m[1]), description: escapeControl(m[2].trim()), exposure });
  }
  if (!overall) return undefined;
  unmet.sort((a, b) => b.exposure - a.exposure || a.name.localeCompare(b.name));
  return { ...overall, unmet };
}

/** The exposure of one service (name without .service) inside the running machine. */
export async function readServiceExposure(host: Host, machine: string, name: string): Promise<ServiceExposure> {
  const unit = `${name}.service`;
  const r = await runInMachine(host, machine, ['systemd-analyze', 'security', '--no-pager', '--', unit], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  const parsed = r.exitCode === 0 ? parseSecurityDetail(r.stdout, unit) : undefined;
  if (!parsed) {
    const why = tailLines(r.stderr || r.stdout, 2).split('\n').join(' | ');
    throw new NspawnctlError(`machine ${machine}: systemd-analyze security ${unit} ${r.exitCode === 0 ? 'printed no score' : `exited with ${r.exitCode}`}${why ? `: ${why}` : ''}`);
  }
  return { unit, ...parsed };
}

/** Every service unit the machine's systemd has loaded, with its score (the listing's own unit left out). */
export async function listServiceExposures(host: Host, machine: string): Promise<({ unit: string } & Exposure)[]> {
  // The listing runs as a service of the machine too, and would rate itself: it gets a name to leave out.
  const self = `nspawnctl-audit-${host.pid}.service`;
  const r = await runInMachine(host, machine, ['systemd-analyze', 'security', '--no-pager'], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS, unit: self });
  if (r.exitCode !== 0) {
    throw new NspawnctlError(`machine ${machine}: systemd-analyze security exited with ${r.exitCode}: ${tailLines(r.stderr || r.stdout, 2).split('\n').join(' | ')}`);
  }
  return parseSecurityTable(r.stdout).filter((row) => row.unit !== self);
}

/** A score now and with a planned drop-in, both from the unit files (systemd-analyze --offline). */
export type ExposureEstimate = { before: Exposure; after: Exposure } | { missing: true } | { unavailable: string };

const NOW = '--- nspawnctl: now';
const PLANNED = '--- nspawnctl: planned';

// Runs inside the machine, in a transient service with a private /tmp: copies the unit's file
// next to the planned drop-in (read from standard input; empty to leave nspawnctl's out), and
// rates both the unit as it is and that copy. systemd-analyze loads a unit file given by path
// with the drop-ins of its own directory first, so the copy's drop-in takes the place of the one
// in /etc/systemd/system.
const ESTIMATE_SCRIPT = [
  'unit="$1.service"',
  'fragment=$(systemctl show --property=FragmentPath --value -- "$unit") || exit 3',
  '[ -n "$fragment" ] || exit 3',
  'dir=$(mktemp -d) || exit 4',
  'mkdir -- "$dir/$unit.d" && cp -- "$fragment" "$dir/$unit" && cat > "$dir/$unit.d/50-nspawnctl-hardening.conf" || exit 4',
  `echo '${NOW}'`,
  'systemd-analyze security --no-pager --offline=true -- "$unit" || exit 5',
  `echo '${PLANNED}'`,
  'systemd-analyze security --no-pager --offline=true -- "$dir/$unit" || exit 5',
].join('\n');

/**
 * Estimates a service's score before and after its drop-in becomes `dropIn` ('' when it is
 * removed), without changing the machine: both from its unit files, as systemd-analyze
 * --offline reads them (systemd 250 or later in the machine). The live score systemd computes
 * once the unit is loaded can be a few tenths lower, for settings it implies at load time.
 */
export async function estimateExposure(host: Host, machine: string, name: string, dropIn: string): Promise<ExposureEstimate> {
  const r = await runInMachine(host, machine, ['sh', '-c', ESTIMATE_SCRIPT, 'sh', name], { input: dropIn, allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS, properties: ['PrivateTmp=yes'] });
  if (r.exitCode === 3) return { missing: true };
  const unit = `${name}.service`;
  const at = r.stdout.indexOf(`\n${PLANNED}\n`);
  const before = r.exitCode === 0 && at >= 0 ? parseSecurityDetail(r.stdout.slice(0, at), unit) : undefined;
  const after = r.exitCode === 0 && at >= 0 ? parseSecurityDetail(r.stdout.slice(at), unit) : undefined;
  if (!before || !after) {
    const why = r.exitCode === 5 ? "the machine's systemd-analyze cannot rate unit files offline (it needs systemd 250 or later)" : `the estimate failed (exit ${r.exitCode}): ${tailLines(r.stderr || r.stdout, 1)}`;
    return { unavailable: why };
  }
  return { before: { exposure: before.exposure, level: before.level }, after: { exposure: after.exposure, level: after.level } };
}

/** "2.8 OK" */
export function formatExposure(e: Exposure): string {
  return `${e.exposure.toFixed(1)} ${e.level}`;
}
