// What nspawnctl knows of the distributions it bootstraps: their release codenames and official
// archive hosts. Enough to refuse another distribution's suite or mirror at load time and to
// suggest a codename for a typo; a release it has not heard of is asked of the mirror instead.

export type Distribution = 'debian' | 'ubuntu';

/** Release codenames, oldest first (what plan suggests from when a mirror has no such suite). */
export const KNOWN_SUITES: Readonly<Record<Distribution, readonly string[]>> = {
  debian: ['buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'sid'],
  ubuntu: ['focal', 'jammy', 'noble', 'oracular', 'plucky', 'questing'],
};

/** Debian's archive also names suites by their role. */
export const DEBIAN_SUITE_ALIASES: readonly string[] = ['oldoldstable', 'oldstable', 'stable', 'testing', 'unstable'];

/** How a distribution is written in messages. */
export const DISTRIBUTION_TITLES: Readonly<Record<Distribution, string>> = { debian: 'Debian', ubuntu: 'Ubuntu' };

/** The distribution a suite name belongs to, when it is one nspawnctl knows. */
export function suiteDistribution(suite: string): Distribution | undefined {
  if (KNOWN_SUITES.debian.includes(suite) || DEBIAN_SUITE_ALIASES.includes(suite)) return 'debian';
  if (KNOWN_SUITES.ubuntu.includes(suite)) return 'ubuntu';
  return undefined;
}

/**
 * The distribution whose official archive a mirror URL names, or undefined for any other mirror.
 * Looks at the URL's host and, for a caching proxy used as a prefix
 * (http://cache:3142/deb.debian.org/debian), at the first part of its path.
 */
export function mirrorDistribution(mirror: string): Distribution | undefined {
  let url: URL;
  try {
    url = new URL(mirror);
  } catch {
    return undefined;
  }
  const names = [url.hostname, url.pathname.split('/')[1] ?? ''].map((n) => n.toLowerCase());
  const official = (domain: string) => names.some((n) => n === domain || n.endsWith(`.${domain}`));
  if (official('debian.org')) return 'debian';
  if (official('ubuntu.com')) return 'ubuntu';
  return undefined;
}

/** The known codename of `distribution` closest to `suite` (a typo's likely meaning), if any is close. */
export function closestSuite(suite: string, distribution: Distribution): string | undefined {
  const pool = [...KNOWN_SUITES[distribution], ...(distribution === 'debian' ? DEBIAN_SUITE_ALIASES : [])];
  let best: { name: string; distance: number } | undefined;
  for (const name of pool) {
    const distance = editDistance(suite, name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
