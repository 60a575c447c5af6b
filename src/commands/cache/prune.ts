import { Flags } from '@oclif/core';
import { DEFAULT_CACHE_DIR, imagesDir, pruneImages } from '../../apply/image-cache';
import { BaseCommand, jsonFlag, waitFlag } from '../../command-base';

// Removes expired (or all) base images and leftovers of interrupted builds; only nspawnctl's own.
export default class CachePrune extends BaseCommand {
  static override summary = 'Remove base images older than the maximum age (or all of them).';
  static override examples = ['<%= config.bin %> cache prune', '<%= config.bin %> cache prune --all'];
  static override flags = {
    'cache-dir': Flags.string({ description: 'Where base images are kept.', default: DEFAULT_CACHE_DIR, env: 'NSPAWNCTL_CACHE_DIR' }),
    'cache-max-age': Flags.integer({ description: 'Days after which a base image is expired.', default: 7, min: 0, env: 'NSPAWNCTL_CACHE_MAX_AGE' }),
    all: Flags.boolean({ description: 'Remove every base image nspawnctl made, fresh ones too.', default: false }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(CachePrune);
    const host = this.createHost();
    const options = { dir: flags['cache-dir'], maxAgeMs: flags['cache-max-age'] * 86_400_000 };
    const { removed, foreign } = await this.withLock(host, 'cache prune', flags.wait, () => pruneImages(host, options, flags.all));
    if (flags.json) return this.outJson({ removed, foreign });
    const lines = removed.length ? removed.map((r) => `removed ${r}`) : ['Nothing to prune.'];
    // Said even when nothing was removed, so a user who expected a removal sees why not.
    if (foreign.length) {
      lines.push(`Left alone ${foreign.length} ${foreign.length === 1 ? 'entry' : 'entries'} in ${imagesDir(options)} that nspawnctl did not make (--json lists them).`);
    }
    this.out(lines.join('\n'));
  }
}
