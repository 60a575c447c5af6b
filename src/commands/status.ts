import { Args, Flags } from '@oclif/core';
import { formatAge } from '../cli/age';
import { BaseCommand, jsonFlag } from '../command-base';
import { fleetFlags, fleetStatus, refuseFleetFlags } from '../fleet/commands';
import { inspectMachines } from '../plan/inspect';
import { exposureCell, ServiceReport } from '../plan/service-report';

/** Where root inside lands on the host: what a read-write bind source must be chowned to. */
function usersLine(users: { base: number; count: number } | undefined): string {
  if (!users) return '-';
  if (users.base === 0) return 'host UIDs (no user namespace: root inside is host root)';
  return `host UIDs ${users.base}-${users.base + users.count - 1} (root inside is ${users.base}:${users.base})`;
}

/** Each hardened service with its exposure and the three settings that weigh most in it. */
function serviceLines(services: ServiceReport[]): string[] {
  if (services.length === 0) return [];
  const width = Math.max(...services.map((s) => s.name.length));
  return [
    'services:  exposure (systemd-analyze security inside the machine; 0 is best, 10 worst)',
    ...services.map((s) => {
      const top = (s.unmet ?? []).slice(0, 3).map((u) => `${u.name} ${u.exposure.toFixed(1)}`);
      return `  ${s.name.padEnd(width)}  ${exposureCell(s)}${top.length ? `  unmet: ${top.join(', ')}` : ''}`;
    }),
  ];
}

// Everything nspawnctl knows about one machine.
export default class Status extends BaseCommand {
  static override summary = 'Show one managed machine: state, address, leader PID, files, health, and pending changes.';
  static override examples = ['<%= config.bin %> status web', '<%= config.bin %> status web --json', '<%= config.bin %> status web --manifest fleet.yaml'];
  static override args = { name: Args.string({ description: 'machine name', required: true }) };
  static override flags = {
    manifest: Flags.string({ char: 'f', description: 'Compare with this manifest instead of the one the machine was applied from.' }),
    json: jsonFlag,
    ...fleetFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Status);
    // A fleet manifest (hosts:): the machine's host is asked, over ssh.
    const fleet = await this.fleetManifest(flags.manifest);
    if (fleet) {
      const code = await fleetStatus(this.fleetIo(flags.json), fleet, args.name, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    refuseFleetFlags(flags, flags.manifest ?? 'no --manifest');
    const { machines, notices } = await inspectMachines(this.createHost(), this.cwd(), [args.name], flags.manifest, { detail: true });
    for (const n of notices) process.stderr.write(`note: ${n}\n`);
    const [r] = machines;
    if (flags.json) {
      this.out(JSON.stringify(r, null, 2));
      return;
    }
    const lines = [
      `machine:   ${r.name}`,
      `state:     ${r.state}${r.leader ? ` (leader PID ${r.leader})` : ''}`,
      `address:   ${r.address ?? '-'}`,
      `users:     ${usersLine(r.users)}`,
      `manifest:  ${r.manifest ?? '-'} (${r.sync})`,
      `built:     ${r.record ? `${r.record.bootstrap.distribution} ${r.record.bootstrap.suite} with ${r.record.bootstrap.bootstrapper}, ${r.record.created}` : '-'}`,
      ...(r.record?.previous ? [`previous:  ${r.record.previous.path} (${r.record.previous.bootstrap.distribution} ${r.record.previous.bootstrap.suite}, set aside ${r.record.previous.kept}; nspawnctl rollback ${r.name} swaps it back)`] : []),
      `files:     ${r.record?.files.length ?? 0} managed`,
      `upgraded:  ${r.upgraded ? `${r.upgraded} (${formatAge(r.upgraded, Date.now())})` : r.record ? 'never (by nspawnctl upgrade)' : '-'}`,
      ...(r.system ? [`system:    ${r.system.state}${r.system.failedUnits.length ? ` (failed: ${r.system.failedUnits.join(', ')})` : ''}`] : []),
      ...(r.health ? [`health:    ${r.health.state}: ${r.health.detail}`, ...(r.health.output ?? []).map((l) => `  | ${l}`)] : []),
      ...serviceLines(r.services),
      ...(r.changes.length ? ['pending:', ...r.changes.map((c) => `  ${c}`)] : []),
    ];
    this.out(lines.join('\n'));
  }
}
