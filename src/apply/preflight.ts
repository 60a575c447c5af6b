// Checks, before anything changes, that this host can carry out a plan.
import { PreflightError } from '../errors';
import { findProgram, Host } from '../host/host';
import { appArmorDropInPath } from '../host/paths';
import { isSystemdBooted } from '../plan/observe';
import { Plan } from '../plan/steps';
import { chooseBootstrapper } from './bootstrap';

export interface Missing {
  what: string;
  fix: string;
}

/** Lists what is missing for `plan`; an empty list means apply may proceed. */
export async function findMissing(host: Host, plan: Plan): Promise<Missing[]> {
  if (plan.steps.length === 0) return [];
  const missing: Missing[] = [];
  if (host.uid !== 0) missing.push({ what: 'nspawnctl apply must run as root', fix: 'Run it with sudo, or as root.' });
  if (!(await isSystemdBooted(host))) {
    missing.push({ what: 'the host was not booted with systemd (no /run/systemd/system)', fix: 'Run nspawnctl on a host whose PID 1 is systemd; to try it anyway, use `npm run sandbox -- up`.' });
  }
  for (const program of ['machinectl', 'systemd-nspawn']) {
    if (!(await findProgram(host, program))) missing.push({ what: `${program} is not installed`, fix: 'apt-get install systemd-container' });
  }
  const needsNetwork = plan.steps.some((s) => s.kind === 'reload-networkd' || s.kind === 'enable-networkd');
  if (needsNetwork && !(await findProgram(host, 'networkctl'))) {
    missing.push({ what: 'networkctl (systemd-networkd) is not installed', fix: 'apt-get install systemd (Debian 12) or systemd-networkd (Debian 13)' });
  }
  if (plan.steps.some((s) => s.kind === 'load-filter' || s.kind === 'unload-filter') && !(await findProgram(host, 'nft'))) {
    missing.push({ what: 'nft is not installed (isolated networks are filtered with nftables)', fix: 'apt-get install nftables, or run: nspawnctl host init MANIFEST' });
  }
  const profiles = plan.steps.flatMap((s) => (s.kind === 'write-file' && s.owner.type === 'machine' && s.entry.hostPath === appArmorDropInPath(s.owner.name) ? [s.owner.name] : []));
  if (profiles.length > 0 && (await host.fs.readText('/sys/module/apparmor/parameters/enabled'))?.trim() !== 'Y') {
    missing.push({
      what: `AppArmor is not enabled on this host, so apparmorProfile cannot be applied (machines: ${profiles.join(', ')})`,
      fix: 'Boot the host with AppArmor enabled (apt-get install apparmor; security=apparmor on the kernel command line), or remove apparmorProfile from those machines.',
    });
  }
  const seen = new Set<string>();
  for (const step of plan.steps) {
    if (step.kind !== 'create-machine') continue;
    const wanted = step.spec.bootstrapper;
    if (!seen.has(wanted) && !(await chooseBootstrapper(host, wanted))) {
      const pkg = wanted === 'auto' ? 'mmdebstrap' : wanted;
      missing.push({ what: `${wanted === 'auto' ? 'neither mmdebstrap nor debootstrap' : wanted} is installed (needed for machine ${step.machine})`, fix: `apt-get install ${pkg}` });
    }
    seen.add(wanted);
    if (step.spec.distribution === 'ubuntu' && !(await host.fs.stat('/usr/share/keyrings/ubuntu-archive-keyring.gpg'))) {
      missing.push({ what: `the Ubuntu archive keyring is missing (needed for machine ${step.machine})`, fix: 'apt-get install ubuntu-keyring' });
    }
  }
  return missing;
}

export async function assertReady(host: Host, plan: Plan): Promise<void> {
  const missing = await findMissing(host, plan);
  if (missing.length > 0) throw new PreflightError(missing);
}
