import { Flags } from '@oclif/core';
import { DEFAULT_CACHE_DIR, pruneImages } from '../../apply/image-cache';
import { BaseCommand, jsonFlag, waitFlag } from '../../command-base';

// Removes expired (or all) base images and leftovers of interrupted builds.
export default class CachePrune extends BaseCommand {
  static override summary = 'Remove base images older than the maximum age (or all of them).';
  static override examples = ['<%= config.bin %> cache prune', '<%= config.bin %> cache prune --all'];
  static override flags = {
    'cache-dir': Flags.string({ description: 'Where base images are kept.', default: DEFAULT_CACHE_DIR, env: 'NSPAWNCTL_CACHE_DIR' }),
    'cache-max-age': Flags.integer({ description: 'Days after which a base image is expired.', default: 7, min: 0, env: 'NSPAWNCTL_CACHE_MAX_AGE' }),
    all: Flags.boolean({ description: 'Remove every base image.', default: false }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(CachePrune);
    const host = this.createHost();
    const removed = await this.withLock(host, 'cache prune', flags.wait, () =>
      pruneImages(host, { dir: flags['cache-dir'], maxAgeMs: flags['cache-max-age'] * 86_400_000 }, flags.all),
    );
    if (flags.json) return this.outJson({ removed });
    this.out(removed.length ? removed.map((r) => `removed ${r}`).join('\n') : 'Nothing to prune.');
  }
}
