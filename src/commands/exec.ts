import { Args, Flags } from '@oclif/core';
import { randomBytes } from 'node:crypto';
import { checkExecOptions, execInMachine, parseEnvAssignment, requireRunningMachine } from '../apply/exec';
import { BaseCommand } from '../command-base';
import { NspawnctlError } from '../errors';

// Runs one command inside a running machine, wired to the caller's stdin, stdout and stderr.
export default class Exec extends BaseCommand {
  static override summary = 'Run a command inside a running machine; its output is yours and its exit status is the command\'s.';
  static override description =
    "CMD runs as a transient service of the machine's own systemd (systemd-run --machine=NAME --pipe): in the machine's namespaces, cgroup, user namespace and seccomp filter, never on the host. " +
    'Standard input, output and error are passed through as they are (binary-safe, no terminal: for an interactive program use nspawnctl shell). ' +
    'The exit status is the command\'s own, 128 + N when a signal N killed it; Ctrl-C is passed on to the command. Arguments reach the command verbatim, "$" included. ' +
    'A machine nspawnctl does not manage, or one that is not running, is refused with exit 1 and nothing runs. Needs root.';
  static override examples = [
    '<%= config.bin %> exec web -- nginx -t',
    '<%= config.bin %> exec db --user postgres --env PGDATABASE=app -- psql -c "select 1"',
    'tar -C site -c . | nspawnctl exec web --cwd /var/www -- tar -x',
  ];
  static override usage = '<%= command.id %> NAME [--user U] [--env NAME=VALUE]... [--cwd DIR] -- CMD [ARGS...]';
  static override args = {
    name: Args.string({ description: 'a running machine nspawnctl manages', required: true }),
    // Everything after "--" is the command, its own flags included.
    cmd: Args.string({ description: 'the command and its arguments, after --', required: false, multiple: true }),
  };
  static override flags = {
    user: Flags.string({ char: 'u', description: 'Run as this user of the machine (a name or UID; default root).' }),
    env: Flags.string({ char: 'e', description: 'Set an environment variable for the command (repeatable).', multiple: true, multipleNonGreedy: true, helpValue: 'NAME=VALUE' }),
    cwd: Flags.string({ description: 'Working directory inside the machine (an absolute path; default /).', helpValue: 'DIR' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Exec);
    const command = args.cmd ?? [];
    if (command.length === 0) throw new NspawnctlError('no command to run', { exitCode: 2, hint: `nspawnctl exec ${args.name} -- CMD [ARGS...]` });
    const options = { user: flags.user, env: (flags.env ?? []).map(parseEnvAssignment), cwd: flags.cwd };
    checkExecOptions(options);
    const host = this.createHost();
    // The records (which machines are nspawnctl's) and the machine's systemd are root's.
    this.requireRoot(host, 'exec');
    await requireRunningMachine(host, args.name);
    const unit = `nspawnctl-exec-${host.pid}-${randomBytes(4).toString('hex')}.service`;
    const result = await execInMachine(host, args.name, command, { ...options, unit });
    if (result.note) process.stderr.write(`nspawnctl: note: ${result.note}\n`);
    if (result.exitCode !== 0) this.exit(result.exitCode);
  }
}
