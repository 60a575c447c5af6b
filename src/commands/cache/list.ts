import { Flags } from '@oclif/core';
import { DEFAULT_CACHE_DIR, listImages } from '../../apply/image-cache';
import { BaseCommand, jsonFlag } from '../../command-base';
import { formatTable } from '../../plan/format';

// Shows the base images new machines are copied from.
export default class CacheList extends BaseCommand {
  static override summary = 'List the cached base images.';
  static override examples = ['<%= config.bin %> cache list', '<%= config.bin %> cache list --json'];
  static override flags = {
    'cache-dir': Flags.string({ description: 'Where base images are kept.', default: DEFAULT_CACHE_DIR, env: 'NSPAWNCTL_CACHE_DIR' }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(CacheList);
    const images = await listImages(this.createHost(), { dir: flags['cache-dir'], maxAgeMs: 0 });
    if (flags.json) return this.outJson(images);
    if (images.length === 0) return this.out(`No base images in ${flags['cache-dir']}.`);
    const rows = [['KEY', 'BASE', 'BOOTSTRAPPER', 'CREATED', 'PACKAGES'], ...images.map((i) => [i.key, `${i.distribution} ${i.suite} ${i.variant} ${i.architecture}`, i.bootstrapper, i.created, i.packages.join(',')])];
    this.out(formatTable(rows));
  }
}
