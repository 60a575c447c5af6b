// "did you mean ...?": the one edit distance behind every suggestion the loader makes (unknown
// keys, system call names), so that all of them suggest only names that are really close.

/** Levenshtein distance: the fewest insertions, deletions and substitutions from a to b. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/**
 * The candidate closest to `word` when it is close: the same but for case, or at most
 * `maxDistance` edits away. Of equally close ones, the one that starts like `word` for longest
 * (umount: umount2 rather than mount), then the first. Undefined when none is close.
 */
export function closestMatch(word: string, candidates: Iterable<string>, maxDistance: number): string | undefined {
  let best: string | undefined;
  let bestDistance = maxDistance + 1;
  let bestPrefix = -1;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    if (c.toLowerCase() === lower) return c;
    // Cheap bound first: the length difference alone needs that many edits.
    if (Math.abs(c.length - word.length) > Math.min(bestDistance, maxDistance)) continue;
    const d = editDistance(c, word);
    if (d > maxDistance) continue;
    const prefix = commonPrefix(c, word);
    if (d < bestDistance || (d === bestDistance && prefix > bestPrefix)) {
      best = c;
      bestDistance = d;
      bestPrefix = prefix;
    }
  }
  return best;
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}
