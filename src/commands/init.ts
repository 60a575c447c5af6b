import { Args } from '@oclif/core';
import { posix } from 'node:path';
import { BaseCommand } from '../command-base';
import { NspawnctlError } from '../errors';
import { insideMachinePath } from '../host/paths';
import { observeStarterFacts } from '../init/observe';
import { buildStarter, DEB_SCHEMA_PATH, describeStarter } from '../init/starter';

// Writes a commented starter manifest that fits this host; never overwrites anything.
export default class Init extends BaseCommand {
  static override summary = 'Write a commented starter manifest that fits this host.';
  static override description =
    "One machine on a private bridge with NAT. It takes the host's own release (Debian 12 bookworm, Debian 13 trixie, Ubuntu 24.04 noble; Debian 12 otherwise, saying so), " +
    'a private /24 that overlaps no route or address of the host (asked with ip route and ip addr: 10.77.0.0/24 first), a bridge name no interface has, and DNS a machine can reach. ' +
    'The first line points editors at the JSON schema. An existing FILE is never overwritten (exit 2, nothing written); - prints the manifest on stdout. Needs no root.';
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init /srv/nspawn/machines.yaml', '<%= config.bin %> init - | less'];
  static override args = { file: Args.string({ description: 'file to write, or - for stdout', default: 'machines.yaml', required: false }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Init);
    const file = args.file ?? 'machines.yaml';
    const target = file === '-' ? undefined : posix.resolve(this.cwd(), file);
    if (target && insideMachinePath(target)) throw new NspawnctlError(`refusing to write ${file}: it is inside a machine's root filesystem`, { exitCode: 2 });
    const facts = await observeStarterFacts(this.createHost());
    // yaml-language-server resolves a relative $schema against the manifest's directory.
    const schema = posix.relative(target ? posix.dirname(target) : this.cwd(), posix.join(this.config.root, 'schema', 'machines.schema.json'));
    const starter = (() => {
      try {
        return buildStarter(facts, { schema, installedSchema: DEB_SCHEMA_PATH, fileName: target ? file : 'machines.yaml' });
      } catch (err) {
        throw new NspawnctlError(`cannot choose a subnet: ${(err as Error).message}`, { hint: 'Write the manifest by hand (docs/manifest.md), with a subnet you know is free.' });
      }
    })();
    for (const w of starter.warnings) process.stderr.write(`warning: ${w}\n`);
    if (!target) return this.out(starter.text);
    const written = await this.createHost(posix.dirname(target))
      .fs.createExclusive(`/${posix.basename(target)}`, starter.text, 0o644)
      .catch((err: NodeJS.ErrnoException) => {
        const why = err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied' : err.code === 'EROFS' ? 'read-only file system' : err.code === 'ENOENT' ? 'no such directory' : err.message;
        throw new NspawnctlError(`cannot write ${file}: ${why}; nothing was written`, { cause: err });
      });
    if (!written) {
      throw new NspawnctlError(`${file} already exists; nothing was written`, { exitCode: 2, hint: `Name another file, or see the starter with: ${this.config.bin} init -` });
    }
    this.out(`${describeStarter(starter, file)}\nNext, as root: ${this.config.bin} host init ${file} && ${this.config.bin} apply ${file}`);
  }
}
