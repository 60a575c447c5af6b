// A command manifest shaped like oclif.manifest.json, with every case the generators handle:
// topics, a hidden command and flag, a negatable flag, a flag with options and a default, a
// short name, a command that takes more arguments after `--`, an example object, a description
// without a summary, and a plugin that defines a command the CLI also has.
import { OclifManifest } from '../../src/packaging/commands';

export const CLI_MANIFEST: OclifManifest = {
  version: '1.2.3',
  commands: {
    apply: {
      id: 'apply',
      summary: 'Make the host match <%= config.bin %>\'s manifest.',
      description: 'Plans, then applies.\n\nSecond paragraph with --dry-run.\n.starts with a dot',
      examples: ['<%= config.bin %> apply machines.yaml', { description: 'Only look', command: '<%= config.bin %> <%= command.id %> m.yaml --dry-run' }],
      args: { file: { name: 'file', description: 'manifest file', required: true } },
      flags: {
        'dry-run': { name: 'dry-run', type: 'boolean', description: 'Show the plan and stop.', allowNo: false },
        wait: { name: 'wait', type: 'boolean', description: 'Wait for the lock.', allowNo: true },
        jobs: { name: 'jobs', type: 'option', char: 'j', description: 'How many at once.', default: 2 },
        mode: { name: 'mode', type: 'option', description: 'How to bootstrap.', options: ['fast', 'safe'], default: 'safe' },
        secret: { name: 'secret', type: 'boolean', hidden: true, description: 'not shown' },
      },
    },
    destroy: {
      id: 'destroy',
      summary: 'Remove a machine.',
      args: { name: { name: 'name', description: 'machine name', required: true } },
      flags: { yes: { name: 'yes', type: 'boolean', char: 'y', description: 'Do not ask.' }, manifest: { name: 'manifest', type: 'option', char: 'f', description: 'Compare with this manifest.' } },
    },
    'host:init': {
      id: 'host:init',
      description: 'Prepare the host.\nInstalls packages and writes networkd files.',
      args: { file: { name: 'file', description: 'manifest', required: false } },
      flags: { out: { name: 'out', type: 'option', char: 'o', description: 'directory' } },
    },
    'host:check': { id: 'host:check', summary: 'Check the host.', flags: {}, args: {} },
    'profile:syscalls': {
      id: 'profile:syscalls',
      summary: 'Profile a command.',
      strict: false,
      args: { machine: { name: 'machine', description: 'a running machine', required: true } },
      flags: {},
    },
    internal: { id: 'internal', summary: 'Hidden.', hidden: true, flags: {}, args: {} },
  },
};

export const PLUGIN_MANIFEST: OclifManifest = {
  commands: {
    help: { id: 'help', summary: 'Display help for <%= config.bin %>.', args: { command: { name: 'command', description: 'Command to show help for.' } }, flags: {} },
    destroy: { id: 'destroy', summary: 'The plugin\'s destroy, shadowed by the CLI\'s.', flags: {}, args: {} },
  },
};
