// The one object through which nspawnctl touches a machine: a runner and a rooted filesystem.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { NspawnctlError } from '../errors';
import { createNodeFs, HostFs } from './fs';
import { createExecaRunner, Runner } from './runner';

export interface Host {
  runner: Runner;
  fs: HostFs;
  /** The effective user id (0 = root). */
  uid: number;
  /** Our own process id, for lock files and messages. */
  pid: number;
  /** Reads a user's input file (a manifest) relative to the working directory, not the root. */
  readInput(path: string): Promise<string>;
}

/** Directories searched for programs; fixed, so PATH tricks cannot change what runs as root. */
export const PROGRAM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The real host: execa and the filesystem at `root`. */
export function createRealHost(root = '/'): Host {
  return {
    runner: createExecaRunner(),
    fs: createNodeFs(root),
    uid: typeof process.getuid === 'function' ? process.getuid() : -1,
    pid: process.pid,
    async readInput(path) {
      try {
        return (await readFile(resolve(path))).toString('utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new NspawnctlError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { exitCode: 2, cause: err });
      }
    },
  };
}

/** Finds a program in PROGRAM_DIRS through the Host's filesystem. */
export async function findProgram(host: Host, name: string): Promise<string | undefined> {
  for (const dir of PROGRAM_DIRS) {
    const info = await host.fs.stat(`${dir}/${name}`);
    if (info && (info.type === 'file' || info.type === 'symlink')) return `${dir}/${name}`;
  }
  return undefined;
}
