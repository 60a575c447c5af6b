import { Args, Flags } from '@oclif/core';
import { checkDestroyable, destroyMachine } from '../apply/destroy';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';
import { fleetDestroy, fleetFlags, refuseFleetFlags } from '../fleet/commands';
import { loadManifestFile } from '../pipeline';
import { NspawnctlError } from '../errors';

// Stops a machine and removes everything nspawnctl made for it.
export default class Destroy extends BaseCommand {
  static override summary = 'Stop a machine and remove it with everything nspawnctl made for it.';
  static override description = 'Powers the machine off (terminating it after --stop-timeout), disables it, and removes its root filesystem, its .nspawn file and every other file nspawnctl recorded for it. Machines nspawnctl did not create are refused unless --force. Networks are kept.';
  static override examples = ['<%= config.bin %> destroy web --yes', '<%= config.bin %> destroy legacy --force --yes', '<%= config.bin %> destroy web --manifest fleet.yaml --yes'];
  static override args = { name: Args.string({ description: 'machine name', required: true }) };
  static override flags = {
    yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required when stdin is not a terminal).', default: false }),
    force: Flags.boolean({ description: 'Also remove a machine nspawnctl has no record of (its rootfs and .nspawn file only).', default: false }),
    'stop-timeout': Flags.integer({ description: 'Seconds to wait for a clean poweroff before terminating.', default: 30, min: 1 }),
    json: jsonFlag,
    wait: waitFlag,
    manifest: Flags.string({ char: 'f', description: 'Fleet: the manifest with hosts: that says which host the machine is on (or name it with --host).' }),
    ...fleetFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Destroy);
    const host = this.createHost();
    const fleet = flags.manifest !== undefined ? await loadManifestFile(host, flags.manifest) : undefined;
    if (fleet?.fleet) {
      if (!flags.yes) {
        if (!process.stdin.isTTY) throw new NspawnctlError(`refusing to destroy ${args.name} without --yes (stdin is not a terminal)`, { exitCode: 2 });
        const answer = await this.ask(`Destroy machine ${args.name} and its root filesystem on its host? Type its name to confirm: `);
        if (answer.trim() !== args.name) throw new NspawnctlError('not confirmed; nothing was changed');
      }
      const code = await fleetDestroy(this.fleetIo(flags.json), fleet, args.name, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    refuseFleetFlags(flags, flags.manifest ?? 'no --manifest');
    // Before anything is read or asked: a normal user can neither see nor remove a machine.
    this.requireRoot(host, 'destroy');
    await checkDestroyable(host, args.name, flags.force);
    if (!flags.yes) {
      if (!process.stdin.isTTY) throw new NspawnctlError(`refusing to destroy ${args.name} without --yes (stdin is not a terminal)`, { exitCode: 2 });
      const answer = await this.ask(`Destroy machine ${args.name} and its root filesystem? Type its name to confirm: `);
      if (answer.trim() !== args.name) throw new NspawnctlError('not confirmed; nothing was changed');
    }
    const report = await this.withLock(host, `destroy ${args.name}`, flags.wait, () =>
      destroyMachine(host, args.name, {
        force: flags.force,
        stopTimeoutMs: flags['stop-timeout'] * 1000,
        onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
      }),
    );
    if (flags.json) this.out(JSON.stringify(report, null, 2));
    else this.out(`Destroyed ${args.name} (${report.stopped}); removed ${report.removed.length} path(s).`);
  }
}
