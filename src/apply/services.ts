// Brings services inside a running machine onto their new hardening: the machine's own systemd
// reloads its unit files and restarts them, asked over its bus (systemctl --machine), the way
// apply already asks it whether it has started. Nothing of the machine runs on the host.
import { escapeControl, NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { serviceDropInPath } from '../manifest/services';
import { runInMachine, SHORT_TIMEOUT_MS, syncMachineJournal } from './in-machine';

/**
 * How long one restart may take. A unit's own start timeout is 90 s unless it sets another;
 * what runs inside is the machine's to control, and nspawnctl holds the host lock meanwhile.
 */
export const SERVICE_RESTART_TIMEOUT_MS = 5 * 60_000;

/** What the machine's systemd says about one unit. */
export interface UnitState {
  id: string;
  loadState: string;
  activeState: string;
  dropInPaths: string[];
  mainPid: number;
}

const STATES_THAT_RUN = ['active', 'activating', 'reloading', 'deactivating', 'failed'];

/**
 * The state of each unit (`name.service`), asked in one `systemctl show`: its blocks come in the
 * order of the arguments, separated by blank lines. Values come from the machine and are only
 * compared, never shown unescaped.
 */
export async function showUnits(host: Host, machine: string, names: string[]): Promise<Map<string, UnitState>> {
  const units = names.map((n) => `${n}.service`);
  const r = await host.runner.run('systemctl', [`--machine=${machine}`, 'show', '--property=Id,LoadState,ActiveState,DropInPaths,MainPID', '--', ...units], { timeoutMs: SHORT_TIMEOUT_MS });
  const blocks = r.stdout.split(/\n[ \t]*\n/).filter((b) => b.trim() !== '');
  if (blocks.length !== units.length) {
    throw new NspawnctlError(`machine ${machine}: systemctl show answered ${blocks.length} blocks for ${units.length} units`);
  }
  const states = new Map<string, UnitState>();
  names.forEach((name, i) => {
    const props = new Map<string, string>();
    for (const line of blocks[i].split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) props.set(line.slice(0, eq).trim(), line.slice(eq + 1));
    }
    const pid = Number(props.get('MainPID'));
    states.set(name, {
      id: props.get('Id') ?? '',
      loadState: props.get('LoadState') ?? '',
      activeState: props.get('ActiveState') ?? '',
      dropInPaths: (props.get('DropInPaths') ?? '').split(' ').filter(Boolean),
      mainPid: Number.isSafeInteger(pid) && pid > 0 ? pid : 0,
    });
  });
  return states;
}

/** An error for a unit that is not there (or masked) in the machine. */
export function missingUnitError(machine: string, name: string, loadState: string): NspawnctlError {
  const state = escapeControl(loadState || 'unknown');
  return new NspawnctlError(
    state === 'masked' ? `service ${name}: ${name}.service is masked in machine ${machine}` : `service ${name}: machine ${machine} has no unit ${name}.service (its systemd says LoadState=${state})`,
    { hint: `services: names units of the machine, without .service. Add the package that ships it to packages:, or fix the name (systemctl --machine=${machine} list-unit-files --type=service lists them).` },
  );
}

/** The last lines of a unit's journal, read by journalctl inside the machine after a sync; '' when there is none. */
async function journalTail(host: Host, machine: string, name: string): Promise<string> {
  await syncMachineJournal(host, machine);
  const r = await runInMachine(host, machine, ['journalctl', '--no-pager', '--quiet', '--lines=15', `--unit=${name}.service`], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS }).catch(() => undefined);
  const tail = tailLines(r?.stdout ?? '', 15);
  return tail ? `; its journal ends:\n${tail}` : '';
}

const startHint = (machine: string, name: string) =>
  `Its hardening may stop it: loosen services.${name} (docs/security.md, "Service presets"), or see what it calls with nspawnctl profile syscalls ${machine} --service ${name}; then apply again. Meanwhile: journalctl --machine=${machine} -u ${name}.service`;

export interface RestartServicesStep {
  machine: string;
  units: string[];
  released: string[];
  afterBoot: boolean;
}

/**
 * Reloads the machine's systemd and restarts the services whose hardening changed (those that
 * run; a stopped one gets it when it starts), after checking that each hardened unit exists and
 * loaded its drop-in. Right after the machine (re)started, it only checks, and that no hardened
 * service failed to start.
 */
export async function restartServices(host: Host, step: RestartServicesStep, onLine: (line: string) => void): Promise<void> {
  const { machine } = step;
  if (!step.afterBoot) await host.runner.run('systemctl', [`--machine=${machine}`, 'daemon-reload'], { timeoutMs: SHORT_TIMEOUT_MS });
  const states = await showUnits(host, machine, [...step.units, ...step.released]);
  for (const name of step.units) {
    const state = states.get(name)!;
    if (state.loadState !== 'loaded') throw missingUnitError(machine, name, state.loadState);
    if (!state.dropInPaths.includes(serviceDropInPath(name))) {
      throw new NspawnctlError(`service ${name}: the systemd of machine ${machine} did not load its hardening ${serviceDropInPath(name)} (it loads: ${escapeControl(state.dropInPaths.join(' ')) || 'no drop-in'})`, {
        hint: `Is ${name} an alias of another unit? Name the unit itself (systemctl --machine=${machine} show -p Id ${name}.service).`,
      });
    }
    if (step.afterBoot && state.activeState === 'failed') {
      throw new NspawnctlError(`service ${name}: ${name}.service failed to start in machine ${machine}${await journalTail(host, machine, name)}`, { hint: startHint(machine, name) });
    }
  }
  if (step.afterBoot) return;
  for (const name of [...step.units, ...step.released]) {
    const state = states.get(name)!;
    // A released unit may have gone with its package: nothing to restart then.
    if (state.loadState !== 'loaded') continue;
    if (!STATES_THAT_RUN.includes(state.activeState)) {
      onLine(`${name}.service is not running in ${machine}; its ${step.units.includes(name) ? 'hardening' : 'hardening removal'} applies when it starts`);
      continue;
    }
    const r = await host.runner.run('systemctl', [`--machine=${machine}`, 'restart', '--', `${name}.service`], { allowFailure: true, timeoutMs: SERVICE_RESTART_TIMEOUT_MS });
    if (r.exitCode !== 0) {
      const why = tailLines(r.stderr || r.stdout, 3);
      throw new NspawnctlError(`service ${name}: ${name}.service did not start again in machine ${machine}${step.units.includes(name) ? ' with its new hardening' : ''}${why ? ` (${why.split('\n').join(' | ')})` : ''}${await journalTail(host, machine, name)}`, {
        hint: startHint(machine, name),
      });
    }
    onLine(`restarted ${name}.service in ${machine}`);
  }
}
