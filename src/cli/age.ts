// How long ago something happened, short enough for a table column ("3 d ago").

/** `then` (ISO 8601) relative to `nowMs`: "just now", "12 min ago", "5 h ago", "3 d ago"; "-" when absent or unreadable. */
export function formatAge(then: string | undefined, nowMs: number): string {
  if (then === undefined) return '-';
  const at = Date.parse(then);
  if (Number.isNaN(at)) return '-';
  const seconds = Math.max(0, Math.floor((nowMs - at) / 1000));
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}
