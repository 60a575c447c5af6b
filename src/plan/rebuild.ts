// What rebuild may leave to itself: it replaces a machine's root filesystem only, so every other
// change the plan has for that machine (or for the host's networks) must be applied first.
import { isWithin, rootfsPath } from '../host/paths';
import { stepGroup, HOST_GROUP } from '../apply/apply';
import { describeStep, Plan, Step } from './steps';

/** Steps a rebuild covers: files inside the rootfs, packages, the record, and a (re)start. */
function coveredByRebuild(step: Step, name: string): boolean {
  switch (step.kind) {
    case 'write-file':
      return step.entry.inRootfs;
    case 'remove-file':
      return isWithin(step.path, rootfsPath(name));
    case 'install-packages':
    case 'rebuild-machine':
    case 'write-record':
    case 'start-machine':
    case 'restart-machine':
    case 'remove-staging':
      return true;
    default:
      return false;
  }
}

/**
 * The planned changes that rebuild of `name` would not make (host files, drop-ins, binds,
 * networks), one line each; empty when the machine can be rebuilt from this plan.
 */
export function changesBlockingRebuild(plan: Plan, name: string): string[] {
  const lines: string[] = [];
  for (const c of plan.conflicts) if (c.owner.name === name || c.owner.type === 'network') lines.push(`conflict: ${c.message}`);
  for (const step of plan.steps) {
    const group = stepGroup(step);
    if (group === name ? !coveredByRebuild(step, name) : group === HOST_GROUP) lines.push(describeStep(step));
  }
  return lines;
}
