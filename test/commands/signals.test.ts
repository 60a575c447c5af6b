// SIGINT/SIGTERM and BaseCommand: a command that waits on an answer is stopped by the first
// signal (exit 130), and one whose remaining work never waited on anything does not exit 0 after
// saying it is stopping. The signals are delivered to the listeners BaseCommand installs
// (process.emit), not sent to the test process. Reading input and waiting on a lock are covered
// with the real CLI in cli-input.test.ts and in test/host/lock.test.ts.
import { PassThrough } from 'node:stream';
import { BaseCommand } from '../../src/command-base';
import { runCommand } from '../helpers/run-command';

const STOPPING = (signal: string) => `nspawnctl: ${signal} received, stopping (again to force)\n`;

/** Delivers `signal` to the process's listeners, as the kernel's signal would. */
const deliver = (signal: NodeJS.Signals) => (process.emit as (event: string, signal: NodeJS.Signals) => boolean)(signal, signal);

describe('BaseCommand and signals', () => {
  test('a signal during work that never waits: the work ends, then exit 130 instead of 0', async () => {
    class Quick extends BaseCommand {
      async run(): Promise<void> {
        await this.parse(Quick);
        deliver('SIGTERM');
        this.out('done');
      }
    }
    const r = await runCommand(Quick, []);
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({
      exitCode: 130,
      stdout: 'done\n',
      stderr: `${STOPPING('SIGTERM')}nspawnctl: interrupted (after the command had done its work)\n`,
    });
  });

  test('without a signal the same command exits 0, and leaves no signal listener behind', async () => {
    const before = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    class Quick extends BaseCommand {
      async run(): Promise<void> {
        await this.parse(Quick);
        this.out('done');
      }
    }
    const r = await runCommand(Quick, []);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(before);
  });

  describe('a question on the terminal', () => {
    const stdin = Object.getOwnPropertyDescriptor(process, 'stdin')!;
    let input: PassThrough;
    beforeEach(() => {
      input = new PassThrough();
      Object.defineProperty(process, 'stdin', { value: input, configurable: true, enumerable: true });
    });
    afterEach(() => {
      Object.defineProperty(process, 'stdin', stdin);
    });

    class Asks extends BaseCommand {
      async run(): Promise<void> {
        await this.parse(Asks);
        this.out(`answer: ${await this.ask('Type its name to confirm: ')}`);
      }
    }

    test('is answered as before', async () => {
      setImmediate(() => input.write('web\n'));
      const r = await runCommand(Asks, []);
      expect([r.exitCode, r.stdout]).toEqual([0, 'answer: web\n']);
    });

    test.each(['SIGTERM', 'SIGINT'] as const)('%s while it waits for an answer: exit 130 without one', async (signal) => {
      // readline resumes its input once it is listening for the answer.
      input.once('resume', () => setImmediate(() => deliver(signal)));
      const r = await runCommand(Asks, []);
      expect([r.exitCode, r.stdout]).toEqual([130, '']);
      // readline ends the abandoned prompt's line (with \r\n or \n, depending on the terminal).
      expect(r.stderr.split(/\r?\n/).filter((l) => l !== '')).toEqual([
        `Type its name to confirm: ${STOPPING(signal).trimEnd()}`,
        'nspawnctl: interrupted while waiting for an answer; nothing was changed',
      ]);
    });
  });
});
