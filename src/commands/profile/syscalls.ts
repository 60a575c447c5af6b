import { Args, Flags } from '@oclif/core';
import { formatProfile, profileSyscalls } from '../../apply/profile';
import { BaseCommand, jsonFlag } from '../../command-base';
import { NspawnctlError } from '../../errors';
import { MACHINE_NAME } from '../../manifest/schema';

// Profiles the system calls of a command run inside a machine, as a systemCallFilter to paste.
export default class ProfileSyscalls extends BaseCommand {
  static override summary = 'Run a command in a machine under strace and print a systemCallFilter that denies what it never called.';
  static override description =
    'Runs CMD inside the running machine under strace -f -c, as a transient service of the machine\'s own systemd (its namespaces, cgroup, user namespace, capabilities and seccomp filter; a call the filter refuses is still seen as an attempt), and prints a security.systemCallFilter that denies every group of ' +
    'a safe candidate set (@aio @clock @cpu-emulation @debug @memlock @module @obsolete @pkey @raw-io @swap) the command never called. A profile covers only the code paths that ran.';
  static override examples = ['<%= config.bin %> profile syscalls web -- /usr/sbin/nginx -t', '<%= config.bin %> profile syscalls db --install-strace --json -- psql -c "select 1"'];
  static override usage = '<%= command.id %> MACHINE [FLAGS] -- CMD [ARGS...]';
  static override args = {
    machine: Args.string({ description: 'a running machine', required: true }),
    // Everything after "--" is the command, its own flags included.
    cmd: Args.string({ description: 'the command to profile and its arguments, after --', required: false, multiple: true }),
  };
  static override flags = {
    'install-strace': Flags.boolean({ description: 'Install strace into the machine if it is missing (asks on a terminal otherwise).', default: false }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProfileSyscalls);
    if (!MACHINE_NAME.test(args.machine)) throw new NspawnctlError(`"${args.machine}" is not a machine name`, { exitCode: 2 });
    const command = args.cmd ?? [];
    if (command.length === 0) throw new NspawnctlError('no command to profile', { exitCode: 2, hint: `nspawnctl profile syscalls ${args.machine} -- CMD [ARGS...]` });
    const host = this.createHost();
    const confirmInstall = async () => {
      const answer = await this.ask(`strace is not in machine ${args.machine}. Install it there (apt-get install strace)? [y/N] `);
      return /^y(es)?$/i.test(answer.trim());
    };
    const profile = await profileSyscalls(host, args.machine, command, {
      installStrace: flags['install-strace'],
      confirmInstall: process.stdin.isTTY ? confirmInstall : undefined,
      onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    if (flags.json) this.out(JSON.stringify(profile, null, 2));
    else this.out(formatProfile(profile).trimEnd());
  }
}
