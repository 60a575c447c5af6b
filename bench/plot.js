// Plain SVG text for the scale benchmark (bench/results.js): seconds (log scale) against the
// number of machines, for apply, the no-op re-apply and plan, with the raw bootstrap of one base
// as a reference line and the targets dotted. Everything comes from the results object; nothing
// here is measured or typed in by hand.
'use strict';

const W = 900;
const H = 440;
const M = { left: 64, right: 290, top: 56, bottom: 52 };
const COLORS = { apply: '#1f77b4', noop: '#2ca02c', plan: '#d62728', raw: '#555555' };

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
/** 1-2-5 ticks between lo and hi (both > 0). */
function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(+v.toPrecision(3));
    }
  }
  return ticks;
}

/** The SVG document for `results` (see bench/results.js): needs results.scale with at least one row. */
function renderScaleSvg(results) {
  const rows = results.scale.filter((r) => r.apply !== undefined);
  const raw = results.measurements['scale raw mmdebstrap']?.median ?? results.measurements['raw mmdebstrap']?.median;
  const warm1 = results.measurements['scale warm 1']?.median;
  const cores = results.host.cores;
  const jobs = results.jobs;
  const maxN = Math.max(...rows.map((r) => r.n));
  const applyTarget = (n) => ((n * warm1) / Math.min(jobs, cores)) * 1.2;

  const values = [...rows.flatMap((r) => [r.apply, r.noop, r.plan]), raw, 0.5, 0.6, ...(warm1 ? rows.map((r) => applyTarget(r.n)) : [])].filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (n) => M.left + (n / maxN) * pw;
  const y = (v) => M.top + ph - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
  const out = [];
  const line = (points, color, extra = 'stroke-width="2"') => `<polyline fill="none" stroke="${color}" ${extra} points="${points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`;

  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold">nspawnctl with many machines: seconds against machines on one host</text>`);
  out.push(
    `<text x="${M.left}" y="40" fill="#444">${esc(`one base, warm cache, one bridge; --jobs ${jobs}, ${cores} cores; ${results.date.slice(0, 10)}; median of ${results.runs} (no-op, plan)`)}</text>`,
  );
  // Axes and grid.
  for (const t of logTicks(lo, hi)) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${M.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const r of rows) {
    out.push(`<line x1="${x(r.n).toFixed(1)}" x2="${x(r.n).toFixed(1)}" y1="${M.top}" y2="${M.top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x(r.n).toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle">${r.n}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#000"/>`);
  out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#000"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">machines (N)</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">seconds (log scale)</text>`);

  // Reference and targets.
  if (raw) out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y(raw).toFixed(1)}" y2="${y(raw).toFixed(1)}" stroke="${COLORS.raw}" stroke-width="1.5" stroke-dasharray="8 4"/>`);
  if (warm1) out.push(line(rows.map((r) => [r.n, applyTarget(r.n)]), COLORS.apply, 'stroke-width="1" stroke-dasharray="2 3" opacity="0.8"'));
  for (const [key, limit] of [['noop', 0.6], ['plan', 0.5]]) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y(limit).toFixed(1)}" y2="${y(limit).toFixed(1)}" stroke="${COLORS[key]}" stroke-width="1" stroke-dasharray="2 3" opacity="0.8"/>`);
  }
  // The measurements, with their values.
  for (const [key, below] of [['apply', true], ['noop', false], ['plan', true]]) {
    const pts = rows.filter((r) => r[key] > 0).map((r) => [r.n, r[key]]);
    out.push(line(pts, COLORS[key]));
    for (const [n, v] of pts) {
      out.push(`<circle cx="${x(n).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${COLORS[key]}"/>`);
      out.push(`<text x="${(x(n) + 5).toFixed(1)}" y="${(y(v) + (below ? 15 : -7)).toFixed(1)}" font-size="10" fill="${COLORS[key]}">${fmt(v)}</text>`);
    }
  }
  // Legend.
  const legend = [
    [COLORS.apply, '', 'apply of N new machines'],
    [COLORS.noop, '', 'no-op re-apply'],
    [COLORS.plan, '', 'plan'],
    [COLORS.raw, '8 4', raw ? `raw mmdebstrap of the base (${fmt(raw)} s)` : 'raw mmdebstrap (not measured)'],
    [COLORS.apply, '2 3', warm1 ? `apply target: N x ${fmt(warm1)} s / ${Math.min(jobs, cores)} x 1.2` : 'apply target (warm 1 not measured)'],
    [COLORS.noop, '2 3', 'no-op target 0.6 s'],
    [COLORS.plan, '2 3', 'plan target 0.5 s'],
  ];
  legend.forEach(([color, dash, label], i) => {
    const ly = M.top + 10 + i * 20;
    const lx = M.left + pw + 16;
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    out.push(`<text x="${lx + 32}" y="${ly + 4}">${esc(label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

module.exports = { renderScaleSvg };
