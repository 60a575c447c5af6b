import { Args, Flags } from '@oclif/core';
import { posix, resolve } from 'node:path';
import { BaseCommand, jsonFlag } from '../command-base';
import { loadManifestFile } from '../pipeline';
import { renderDesiredState } from '../render/desired';

// Writes the generated files under a directory for review; needs no root and no systemd.
export default class Render extends BaseCommand {
  static override summary = 'Write the files apply would write into a directory, for review.';
  static override description = 'Files keep their host paths under DIR: DIR/etc/systemd/nspawn/web.nspawn, DIR/etc/systemd/network/..., and files inside each machine under DIR/var/lib/machines/web/... Nothing is bootstrapped or started; it runs as any user.';
  static override examples = ['<%= config.bin %> render machines.yaml --out ./rendered', 'diff -r ./rendered/etc/systemd /etc/systemd'];
  static override args = { file: Args.string({ description: 'manifest file', required: true }) };
  static override flags = {
    out: Flags.string({ char: 'o', description: 'directory to write into (created if missing)', required: true }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Render);
    const manifest = await loadManifestFile(this.createHost(), args.file);
    const out = this.createHost(resolve(flags.out));
    const desired = renderDesiredState(manifest);
    const entries = [
      ...desired.networks.flatMap((n) => n.entries),
      ...desired.machines.flatMap((m) => [...m.hostEntries, ...m.rootfsEntries]),
    ];
    const written: string[] = [];
    for (const e of entries) {
      const changed =
        e.kind === 'symlink'
          ? await out.fs.writeSymlink(e.hostPath, e.target, {})
          : await out.fs.writeFile(e.hostPath, e.content, { mode: e.mode, dirMode: e.dirMode });
      if (changed) written.push(e.hostPath);
    }
    const rel = (p: string) => posix.join(flags.out, p);
    if (flags.json) this.out(JSON.stringify({ out: resolve(flags.out), files: entries.map((e) => e.hostPath), written }, null, 2));
    else this.out([...entries.map((e) => `${written.includes(e.hostPath) ? 'wrote    ' : 'unchanged'} ${rel(e.hostPath)}`), `${entries.length} file(s), ${written.length} written.`].join('\n'));
  }
}
