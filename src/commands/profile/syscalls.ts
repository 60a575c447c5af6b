import { Args, Flags } from '@oclif/core';
import { formatProfile, profileSyscalls } from '../../apply/profile';
import { formatServiceProfile, parseDuration, profileService } from '../../apply/profile-service';
import { BaseCommand, jsonFlag } from '../../command-base';
import { NspawnctlError } from '../../errors';
import { MACHINE_NAME } from '../../manifest/schema';
import { SERVICE_NAME } from '../../manifest/services';

// Profiles the system calls of a command run inside a machine, as a systemCallFilter to paste.
export default class ProfileSyscalls extends BaseCommand {
  static override summary = 'Run a command in a machine under strace and print a systemCallFilter that denies what it never called.';
  static override description =
    'Runs CMD inside the running machine under strace -f -c, as a transient service of the machine\'s own systemd (its namespaces, cgroup, user namespace, capabilities and seccomp filter; a call the filter refuses is still seen as an attempt), and prints a security.systemCallFilter that denies every group of ' +
    'a safe candidate set (@aio @clock @cpu-emulation @debug @memlock @module @obsolete @pkey @raw-io @swap) the command never called. ' +
    'With --service UNIT it attaches instead to every process of that running service for --duration while you exercise it, and prints a services.UNIT.systemCallFilter. A profile covers only the code paths that ran.';
  static override examples = [
    '<%= config.bin %> profile syscalls web -- /usr/sbin/nginx -t',
    '<%= config.bin %> profile syscalls db --install-strace --json -- psql -c "select 1"',
    '<%= config.bin %> profile syscalls web --service nginx --duration 2m',
  ];
  static override usage = ['<%= command.id %> MACHINE [FLAGS] -- CMD [ARGS...]', '<%= command.id %> MACHINE --service UNIT [--duration 60s] [FLAGS]'];
  static override args = {
    machine: Args.string({ description: 'a running machine', required: true }),
    // Everything after "--" is the command, its own flags included.
    cmd: Args.string({ description: 'the command to profile and its arguments, after --', required: false, multiple: true }),
  };
  static override flags = {
    'install-strace': Flags.boolean({ description: 'Install strace into the machine if it is missing (asks on a terminal otherwise).', default: false }),
    service: Flags.string({ description: 'Trace this running service of the machine (a unit name without .service) instead of a command, and print a services.UNIT.systemCallFilter.' }),
    duration: Flags.string({ description: 'With --service: how long to trace it while you exercise it (60s, 2m; at most 1h).', default: '60s' }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProfileSyscalls);
    if (!MACHINE_NAME.test(args.machine)) throw new NspawnctlError(`"${args.machine}" is not a machine name`, { exitCode: 2 });
    const command = args.cmd ?? [];
    const host = this.createHost();
    const confirmInstall = async () => {
      const answer = await this.ask(`strace is not in machine ${args.machine}. Install it there (apt-get install strace)? [y/N] `);
      return /^y(es)?$/i.test(answer.trim());
    };
    if (flags.service !== undefined) {
      if (command.length > 0) throw new NspawnctlError('give --service or a command after --, not both', { exitCode: 2 });
      if (!SERVICE_NAME.test(flags.service)) throw new NspawnctlError(`${JSON.stringify(flags.service)} is not a unit name without .service, like nginx`, { exitCode: 2 });
      const durationS = parseDuration(flags.duration);
      if (durationS === undefined) throw new NspawnctlError(`--duration takes 1s to 1h, like 60s or 2m, not ${JSON.stringify(flags.duration)}`, { exitCode: 2 });
      const profile = await profileService(host, args.machine, flags.service, {
        durationS,
        installStrace: flags['install-strace'],
        confirmInstall: process.stdin.isTTY ? confirmInstall : undefined,
        onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
        // On stderr even with --json: the signal to start exercising the service.
        onReady: (n) => process.stderr.write(`nspawnctl: tracing ${flags.service}.service in ${args.machine} (${n} process${n === 1 ? '' : 'es'}) for ${durationS} s: exercise it now\n`),
      });
      this.out(flags.json ? JSON.stringify(profile, null, 2) : formatServiceProfile(profile).trimEnd());
      return;
    }
    if (command.length === 0) throw new NspawnctlError('no command to profile', { exitCode: 2, hint: `nspawnctl profile syscalls ${args.machine} -- CMD [ARGS...]` });
    const profile = await profileSyscalls(host, args.machine, command, {
      installStrace: flags['install-strace'],
      confirmInstall: process.stdin.isTTY ? confirmInstall : undefined,
      onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    if (flags.json) this.out(JSON.stringify(profile, null, 2));
    else this.out(formatProfile(profile).trimEnd());
  }
}
