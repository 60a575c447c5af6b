import { Args, Flags } from '@oclif/core';
import { rollbackMachine } from '../apply/rebuild';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';
import { ExitCode, NspawnctlError } from '../errors';
import { MACHINE_NAME } from '../manifest/schema';
import { describeSwap } from './rebuild';

// Puts back the root filesystem the last rebuild replaced.
export default class Rollback extends BaseCommand {
  static override summary = 'Swap back the root filesystem the last rebuild replaced.';
  static override description =
    'Stops the machine, swaps its root filesystem with the one the last rebuild kept (/var/lib/machines/.nspawnctl-NAME.previous), starts it and waits until it is ready: one stop, one start, and the downtime is printed. The two change places, so the replaced one is kept in turn and a second rollback returns to it. When the previous one does not reach readiness, the swap is undone and rollback exits 1. Bind mounts are not touched.';
  static override examples = ['<%= config.bin %> rollback web'];
  static override args = { name: Args.string({ description: 'machine name', required: true }) };
  static override flags = {
    'start-timeout': Flags.integer({ description: 'Seconds the machine may take to stop, and to become ready after its start.', default: 90, min: 1 }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Rollback);
    if (!MACHINE_NAME.test(args.name)) throw new NspawnctlError(`"${args.name}" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)`, { exitCode: ExitCode.invalidManifest });
    const host = this.createHost();
    this.requireRoot(host, 'rollback');
    const report = await this.withLock(host, `rollback ${args.name}`, flags.wait, () =>
      rollbackMachine(host, args.name, { timeoutMs: flags['start-timeout'] * 1000, onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`) }),
    );
    if (flags.json) this.outJson(report);
    else this.out(describeSwap('Rolled back', report));
  }
}
