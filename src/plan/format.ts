// Turns a plan into text for people and JSON for scripts.
import { posix } from 'node:path';
import { describeStep, Plan, Step } from './steps';

const MARK: Record<string, string> = { create: '+', update: '~', rebuild: '~', restart: '~', start: '>', unchanged: '=', conflict: '!' };

export function formatPlanText(plan: Plan): string {
  const out: string[] = [];
  const file = posix.basename(plan.manifest);
  for (const s of plan.summary) {
    out.push(`${MARK[s.action]} ${s.owner.type} ${s.owner.name}: ${s.action}`);
    for (const c of s.changes) out.push(`    ${c}`);
  }
  for (const n of plan.notices) out.push(`note: ${n.owner.type} ${n.owner.name}: ${n.message}`);
  for (const name of plan.unmanaged) {
    out.push(`note: machine ${name} is managed by nspawnctl but not in ${file}; it is left alone (nspawnctl destroy ${name} removes it)`);
  }
  const blocking = hostConflicts(plan);
  if (plan.conflicts.length > 0) {
    const machines = [...new Set(plan.conflicts.map((c) => c.owner.name))].join(', ');
    out.push(
      '',
      blocking.length > 0
        ? `${plan.conflicts.length} conflict(s); apply will not change anything until they are resolved:`
        : `${plan.conflicts.length} conflict(s); apply leaves ${machines} alone${plan.steps.length > 0 ? ' and applies the rest' : ''}:`,
    );
    for (const c of plan.conflicts) out.push(`  ! ${c.owner.type} ${c.owner.name}: ${c.message}`);
  }
  if (blocking.length > 0) {
    // nothing more to show: no step runs
  } else if (plan.steps.length === 0 && plan.conflicts.length === 0) {
    out.push('', `No changes: the host matches ${file}.`);
  } else if (plan.steps.length > 0) {
    out.push('', `${plan.steps.length} step(s):`);
    plan.steps.forEach((s, i) => out.push(`  ${i + 1}. ${describeStep(s)}  (${s.reason})`));
  }
  return `${out.join('\n')}\n`;
}

/**
 * Conflicts that stop a whole apply: those of networks (bridges and networkd are shared by every
 * machine). A machine's conflict stops only that machine.
 */
export function hostConflicts(plan: Plan): Plan['conflicts'] {
  return plan.conflicts.filter((c) => c.owner.type === 'network');
}

/** A step as JSON: file contents are left out, paths and reasons kept. */
export function stepToJson(step: Step): Record<string, unknown> {
  const base = { kind: step.kind, description: describeStep(step), reason: step.reason };
  switch (step.kind) {
    case 'create-machine':
      return {
        ...base,
        machine: step.machine,
        distribution: step.spec.distribution,
        suite: step.spec.suite,
        bootstrapper: step.spec.bootstrapper,
        packages: step.spec.packages,
        files: step.entries.map((e) => e.hostPath),
      };
    case 'write-file':
      return { ...base, owner: step.owner, path: step.entry.hostPath, change: step.change, restartNeeded: step.entry.restart };
    case 'remove-file':
    case 'write-record':
      return { ...base, owner: step.owner, path: step.path };
    case 'install-packages':
      return { ...base, machine: step.machine, packages: step.packages };
    case 'rebuild-machine':
      return { ...base, machine: step.machine, why: step.why, distribution: step.spec.distribution, suite: step.spec.suite, packages: step.spec.packages, files: step.entries.map((e) => e.hostPath) };
    case 'reload-networkd':
      return { ...base, reconfigure: step.reconfigure };
    case 'reload-health':
      return { ...base, machine: step.machine, action: step.action };
    case 'enable-networkd':
      return base;
    case 'load-filter':
      return { ...base, network: step.owner.name, path: step.path };
    case 'unload-filter':
      return { ...base, network: step.owner.name, table: step.table, chain: step.chain };
    case 'reload-machine-units':
      return { ...base, machine: step.machine, restart: step.restart, stop: step.stop };
    case 'restart-services':
      return { ...base, machine: step.machine, units: step.units, released: step.released, afterBoot: step.afterBoot };
    case 'create-bind-source':
    case 'hand-bind-source':
    case 'remove-staging':
      return { ...base, machine: step.machine, path: step.path };
    default:
      return { ...base, machine: step.machine };
  }
}

export function planToJson(plan: Plan): Record<string, unknown> {
  return {
    manifest: plan.manifest,
    changes: plan.steps.length > 0,
    summary: plan.summary,
    steps: plan.steps.map(stepToJson),
    conflicts: plan.conflicts,
    notices: plan.notices,
    unmanaged: plan.unmanaged,
  };
}

/** Rows as aligned columns (two spaces apart), the first row being the header. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}
