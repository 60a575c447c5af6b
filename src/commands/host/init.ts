import { Args, Flags } from '@oclif/core';
import { Listr } from 'listr2';
import { posix } from 'node:path';
import { assertHostInitPossible, observeHostInit, runHostInitStep, undoHostInit } from '../../apply/host-init';
import { BaseCommand, jsonFlag, waitFlag } from '../../command-base';
import { fleetFlags, fleetHostInit, refuseFleetFlags } from '../../fleet/commands';
import { NspawnctlError } from '../../errors';
import { loadManifestFile } from '../../pipeline';
import { describeHostInitStep, HOST_RECORD_PATH, HostInitPlan, planHostInit } from '../../plan/host-init';
import { describeUnreadable } from '../../plan/observe';

// Prepares a fresh Debian/Ubuntu host: packages, networkd, bridges, forwarding, machines.target.
export default class HostInit extends BaseCommand {
  static override summary = 'Make a fresh Debian or Ubuntu host ready for apply (idempotent).';
  static override description = 'Installs systemd-container and the bootstrapper (and nftables for nat networks), enables systemd-networkd without letting it touch links it does not manage, creates the bridges of the manifest, enables IPv4 forwarding for nat networks, raises the kernel limits many machines use up (inotify instances and watches, pseudo-terminals; sized for the memory, kept in /etc/sysctl.d/50-nspawnctl.conf), and enables machines.target. Each step is skipped when already true; a second run changes nothing. Also reports what silently breaks bridged machines (a FORWARD policy of DROP, firewalld, a missing 80-container-vb.network) and a kernel limit too low for the manifest\'s machines.';
  static override examples = [
    '<%= config.bin %> host init machines.yaml',
    '<%= config.bin %> host init machines.yaml --check',
    '<%= config.bin %> host init --dry-run --json',
    '<%= config.bin %> host init --undo',
    '<%= config.bin %> host init fleet.yaml --host beta --package pkg/nspawnctl_0.1.0_all.deb',
  ];
  static override args = { file: Args.string({ description: 'manifest whose networks and bootstrappers to prepare for', required: false }) };
  static override flags = {
    check: Flags.boolean({ description: 'Report what is missing and exit 1 if anything is; change nothing.', default: false }),
    'dry-run': Flags.boolean({ description: 'Show the steps and stop.', default: false }),
    undo: Flags.boolean({ description: 'Remove the files host init wrote, disable the units it enabled, and set the kernel limits it raised back.', default: false, exclusive: ['check', 'dry-run'] }),
    force: Flags.boolean({ description: 'With --undo: even while managed machines exist.', default: false }),
    json: jsonFlag,
    wait: waitFlag,
    ...fleetFlags,
    package: Flags.string({ description: 'Fleet: the .deb (npm run package) to install on hosts that lack this version of nspawnctl.' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(HostInit);
    const host = this.createHost();
    const say = (line: string) => (flags.json ? undefined : process.stderr.write(`${line}\n`));
    if (flags.undo) {
      const r = await this.withLock(host, 'host init --undo', flags.wait, () => undoHostInit(host, flags.force, say));
      if (flags.json) this.outJson(r);
      else if (r.nothingToUndo) this.out(`Nothing to undo: host init has not changed this host (no record in ${HOST_RECORD_PATH}).`);
      else this.out(`Undone: removed ${r.removed.length} file(s), disabled ${r.disabled.length} unit(s)${r.restored.length ? `, restored ${r.restored.map((x) => `${x.key} = ${x.to}`).join(', ')}` : ''}.${r.packages.length ? ` Packages host init installed are kept; remove them with: apt-get remove ${r.packages.join(' ')}` : ''}`);
      return;
    }
    // --check and --dry-run only look, and say what a normal user could not see; the rest changes the host.
    const manifest = args.file ? await loadManifestFile(host, args.file) : undefined;
    // A fleet's controller need not be root: each host's nspawnctl is (or runs through sudo).
    if (manifest?.fleet) {
      const code = await fleetHostInit(this.fleetIo(flags.json), manifest, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    if (flags.package !== undefined) throw new NspawnctlError('--package needs a manifest with hosts: (it is installed on those hosts)', { exitCode: 2 });
    refuseFleetFlags(flags, args.file ?? 'no manifest');
    if (!flags.check && !flags['dry-run']) this.requireRoot(host, 'host init');
    const observed = await observeHostInit(host, manifest);
    const unreadable = describeUnreadable(observed.networkState.unreadable, 'everything host init checks');
    if (unreadable) process.stderr.write(`note: ${unreadable}\n`);
    const plan = planHostInit(manifest, observed, { manifestPath: posix.resolve(this.cwd(), args.file ?? '.'), now: new Date().toISOString() });
    const errors = plan.findings.filter((f) => f.severity === 'error');
    const report = [
      ...plan.steps.map((s) => `  - ${describeHostInitStep(s)}  (${s.reason})`),
      ...plan.findings.map((f) => `${f.severity}: ${f.what}\n  fix: ${f.fix.replace(/\n/g, '\n       ')}`),
    ].join('\n');
    const stepsJson = (p: HostInitPlan) => p.steps.map((s) => ({ kind: s.kind, description: describeHostInitStep(s), reason: s.reason }));
    const json = () => ({ ready: plan.steps.length === 0 && errors.length === 0, steps: stepsJson(plan), findings: plan.findings });

    if (flags.check || flags['dry-run'] || plan.steps.length === 0) {
      if (flags.json) this.outJson(json());
      else if (plan.steps.length > 0) this.out(`${flags.check ? 'Missing' : 'Would do'}:\n${report}`);
      else if (errors.length > 0) this.out(`Nothing to install or write, but the host is not ready:\n${report}`);
      else this.out(`The host is ready for nspawnctl.${report ? `\n${report}` : ''}`);
      if (flags.check && (plan.steps.length > 0 || errors.length > 0)) this.exit(1);
      if (!flags.check && !flags['dry-run'] && errors.length > 0) throw new NspawnctlError(`${errors.length} problem(s) need a manual fix (see above)`);
      return;
    }
    await assertHostInitPossible(host);
    const done = await this.withLock(host, 'host init', flags.wait, async () => {
      // Planned again under the lock: another run may have changed the host meanwhile.
      const locked = planHostInit(manifest, await observeHostInit(host, manifest), { manifestPath: posix.resolve(this.cwd(), args.file ?? '.'), now: new Date().toISOString() });
      say(`host init:\n${locked.steps.map((s) => `  - ${describeHostInitStep(s)}  (${s.reason})`).join('\n')}`);
      const tasks = locked.steps.map((step) => ({
        title: describeHostInitStep(step),
        task: async (_: unknown, task: { output: string }) => runHostInitStep(host, step, (line) => (task.output = line)),
      }));
      await new Listr(tasks, { renderer: this.progressRenderer(flags.json), exitOnError: true, registerSignalListeners: false } as never).run();
      return locked;
    });
    // What a step of this run fixed (a kernel limit it raised) is no longer a problem.
    const remaining = done.findings.filter((f) => f.fixedBy === undefined);
    const doneErrors = remaining.filter((f) => f.severity === 'error');
    if (flags.json) {
      this.outJson({ ready: doneErrors.length === 0, steps: stepsJson(done), findings: done.findings, applied: true });
    } else {
      for (const f of remaining) say(`${f.severity}: ${f.what}\n  fix: ${f.fix.replace(/\n/g, '\n       ')}`);
      this.out(`Host init done: ${done.steps.length} step(s).`);
    }
    if (doneErrors.length > 0) throw new NspawnctlError(`${doneErrors.length} problem(s) need a manual fix (see above)`);
  }
}
