import { Args, Flags } from '@oclif/core';
import { posix, resolve } from 'node:path';
import { renderInto } from '../apply/render-out';
import { BaseCommand, jsonFlag } from '../command-base';
import { loadManifestFile } from '../pipeline';
import { observeHostResolver } from '../plan/observe';
import { renderDesiredState } from '../render/desired';

// Writes the generated files under a directory for review; needs no root and no systemd.
export default class Render extends BaseCommand {
  static override summary = 'Write the files apply would write into a directory, for review.';
  static override description =
    'Files keep their host paths under DIR: DIR/etc/systemd/nspawn/web.nspawn, DIR/etc/systemd/network/..., and files inside each machine under DIR/var/lib/machines/web/... ' +
    'DIR must be new, empty, or an earlier render (a re-render replaces exactly its own files and removes those no longer generated); anything else is refused with exit code 2. ' +
    'Nothing is written through a symlink in DIR. Nothing is bootstrapped or started; it runs as any user.';
  static override examples = ['<%= config.bin %> render machines.yaml --out ./rendered', 'diff -r ./rendered/etc/systemd/nspawn /etc/systemd/nspawn'];
  static override args = { file: Args.string({ description: 'manifest file', required: true }) };
  static override flags = {
    out: Flags.string({ char: 'o', description: 'directory to write into (created if missing)', required: true }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Render);
    const host = this.createHost();
    const manifest = await loadManifestFile(host, args.file);
    // As apply would on this host: machines without dns: copy this host's nameservers.
    const desired = renderDesiredState(manifest, { resolver: (await observeHostResolver(host)).resolver });
    const entries = [...desired.networks.flatMap((n) => n.entries), ...desired.machines.flatMap((m) => [...m.hostEntries, ...m.rootfsEntries])];
    const r = await renderInto(this.createHost(resolve(flags.out)).fs, flags.out, entries);
    if (flags.json) {
      this.out(JSON.stringify({ out: resolve(flags.out), before: r.before, files: r.files, written: r.written, removed: r.removed }, null, 2));
      return;
    }
    const rel = (p: string) => posix.join(flags.out, p);
    this.out(
      [
        ...r.files.map((f) => `${r.written.includes(f) ? 'wrote    ' : 'unchanged'} ${rel(f)}`),
        ...r.removed.map((f) => `removed   ${rel(f)}`),
        `${r.files.length} file(s), ${r.written.length} written${r.removed.length ? `, ${r.removed.length} stale removed` : ''} (${flags.out}: ${r.before === 'created' ? 'created' : r.before === 'empty' ? 'was empty' : 'an earlier render, replaced'}).`,
      ].join('\n'),
    );
  }
}
