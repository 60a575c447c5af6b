// The steps of a plan: plain data, each saying what it does and why. apply runs them in order.
import { Machine } from '../manifest/schema';
import { DesiredEntry } from '../render/desired';
import { MachineRecord, NetworkRecord } from './records';

export type Step =
  | { kind: 'create-machine'; machine: string; spec: Machine; entries: DesiredEntry[]; record: MachineRecord; reason: string }
  | { kind: 'write-file'; owner: Owner; entry: DesiredEntry; change: 'create' | 'update'; reason: string }
  | { kind: 'remove-file'; owner: Owner; path: string; reason: string }
  | { kind: 'rebuild-machine'; machine: string; spec: Machine; entries: DesiredEntry[]; record: MachineRecord; why: string[]; reason: string }
  | { kind: 'install-packages'; machine: string; packages: string[]; aptProxy?: string; stopFirst?: boolean; reason: string }
  | { kind: 'write-record'; owner: Owner; path: string; record: MachineRecord | NetworkRecord; reason: string }
  | { kind: 'remove-staging'; machine: string; path: string; reason: string }
  | { kind: 'create-bind-source'; machine: string; path: string; reason: string }
  | { kind: 'hand-bind-source'; machine: string; path: string; reason: string }
  | { kind: 'enable-networkd'; bridges: string[]; reason: string }
  | { kind: 'reload-networkd'; reconfigure: string[]; bridges: string[]; reason: string }
  | { kind: 'enable-machine'; machine: string; reason: string }
  | { kind: 'disable-machine'; machine: string; reason: string }
  | { kind: 'start-machine'; machine: string; reason: string }
  | { kind: 'restart-machine'; machine: string; reason: string }
  | { kind: 'reload-units'; machine: string; reason: string }
  /** Inside a running machine: its systemd re-reads the health check's units; the timer is (re)started, or stopped when the check goes. */
  | { kind: 'reload-health'; machine: string; action: 'start' | 'stop'; reason: string }
  /** Run the machine's health check now and wait until it passes (bounded by --start-timeout). */
  | { kind: 'wait-healthy'; machine: string; reason: string }
  /** The machine's own systemd re-reads its units, then (re)starts or stops these (autoUpgrade's timer). */
  | { kind: 'reload-machine-units'; machine: string; restart: string[]; stop: string[]; reason: string }
  /**
   * Inside the machine: its systemd reloaded, each of `units` checked to exist with its hardening
   * drop-in loaded and restarted when it runs; `released` (drop-in removed) restarted when it
   * runs. After a (re)start of the machine (`afterBoot`), only the check.
   */
  | { kind: 'restart-services'; machine: string; units: string[]; released: string[]; afterBoot: boolean; reason: string }
  | { kind: 'prepare-read-only'; machine: string; shift?: 'pick' | number; mountPoints: string[]; stopFirst: boolean; reason: string }
  | { kind: 'load-filter'; owner: Owner; path: string; reason: string }
  | { kind: 'unload-filter'; owner: Owner; table: string; chain: string; reason: string };

export type Owner = { type: 'machine' | 'network'; name: string };

/** Something apply will not do on its own; shown by plan, and apply refuses while any exists. */
export interface Conflict {
  owner: Owner;
  path: string;
  message: string;
}

/** Something worth knowing that does not stop apply (a setting that only applies at creation). */
export interface Notice {
  owner: Owner;
  message: string;
}

export type Action = 'create' | 'update' | 'rebuild' | 'restart' | 'start' | 'unchanged' | 'conflict';

export interface Summary {
  owner: Owner;
  action: Action;
  changes: string[];
}

export interface Plan {
  manifest: string;
  steps: Step[];
  conflicts: Conflict[];
  notices: Notice[];
  summary: Summary[];
  /** Managed machines on the host that this manifest does not mention (left alone). */
  unmanaged: string[];
}

/** One line describing a step, for plan output and progress titles. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'create-machine':
      return `create machine ${step.machine}: bootstrap ${step.spec.distribution} ${step.spec.suite} (${step.spec.packages.length} packages), write ${step.entries.length} files inside${step.spec.provision.length ? `, run ${step.spec.provision.length} provision commands` : ''}`;
    case 'write-file':
      return `${step.change === 'create' ? 'create' : 'update'} ${step.entry.hostPath}${step.entry.kind === 'symlink' ? ` -> ${step.entry.target}` : ''}`;
    case 'remove-file':
      return `remove ${step.path}`;
    case 'rebuild-machine':
      return `rebuild ${step.machine}: build a fresh root filesystem (${step.why.join('; ')}), swap it in with one stop and one start, keep the old one for rollback`;
    case 'install-packages':
      return `install into ${step.machine}: ${step.packages.join(' ')}${step.stopFirst ? ' (stopped and booted once with a writable root: it is read-only or volatile while it runs)' : ''}`;
    case 'write-record':
      return `record ${step.owner.type} ${step.owner.name} as managed by nspawnctl`;
    case 'remove-staging':
      return `remove ${step.path}`;
    case 'create-bind-source':
      return `create directory ${step.path} (bind mount source of ${step.machine})`;
    case 'hand-bind-source':
      return `give ${step.path} to the root of ${step.machine} (chown to its UID range)`;
    case 'enable-networkd':
      return 'enable and start systemd-networkd';
    case 'reload-networkd':
      return `reload systemd-networkd${step.reconfigure.length ? ` and reconfigure ${step.reconfigure.join(', ')}` : ''}`;
    case 'enable-machine':
      return `enable ${step.machine} (start at boot)`;
    case 'disable-machine':
      return `disable ${step.machine} (do not start at boot)`;
    case 'start-machine':
      return `start ${step.machine}`;
    case 'restart-machine':
      return `restart ${step.machine}`;
    case 'prepare-read-only':
      return `prepare the read-only root of ${step.machine}:${step.shift !== undefined ? ` shift its files to ${step.shift === 'pick' ? 'a picked UID range' : `UID ${step.shift}`}` : ''}${step.mountPoints.length ? ` create mount points ${step.mountPoints.join(' ')}` : ''}`;
    case 'reload-units':
      return `reload systemd units (limits of ${step.machine} take effect)`;
    case 'reload-health':
      return step.action === 'start'
        ? `reload the units of ${step.machine}'s own systemd and restart its health check timer`
        : `stop ${step.machine}'s health check and reload its own systemd's units`;
    case 'wait-healthy':
      return `wait until the health check of ${step.machine} passes`;
    case 'reload-machine-units':
      return `reload the units of ${step.machine}'s own systemd${step.restart.length ? `, restart ${step.restart.join(' ')}` : ''}${step.stop.length ? `, stop ${step.stop.join(' ')}` : ''}`;
    case 'restart-services':
      return step.afterBoot
        ? `check services in ${step.machine}: ${step.units.join(' ')} (loaded with their hardening, not failed)`
        : `reload systemd in ${step.machine} and restart those that run: ${[...step.units.map((u) => `${u} (new hardening)`), ...step.released.map((u) => `${u} (hardening removed)`)].join(', ')}`;
    case 'load-filter':
      return `load packet filter ${step.path} (nft -f)`;
    case 'unload-filter':
      return `remove packet filter chain ${step.chain} from table bridge ${step.table}`;
  }
}
