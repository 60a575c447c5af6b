// createNodeFs turns the kernel's EACCES/EPERM into PermissionDeniedError, so callers can tell
// "not allowed" from "not there" (a normal user's plan notes it; nothing else is swallowed).
// /proc/sys/vm/drop_caches is mode 0200 and procfs checks that mode even for root: reading it is
// a real EACCES for every user, which lets this run the same as root and as anyone else.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NspawnctlError, PermissionDeniedError } from '../../src/errors';
import { createNodeFs } from '../../src/host/fs';

const WRITE_ONLY = '/proc/sys/vm/drop_caches';
const asRoot = process.getuid?.() === 0;

describe('createNodeFs and permission denials', () => {
  test('a refused read is a PermissionDeniedError naming the path (exit 1), keeping the errno code', async () => {
    const err = await createNodeFs('/').readText(WRITE_ONLY).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PermissionDeniedError);
    const denied = err as PermissionDeniedError;
    expect([denied.message, denied.path, denied.code, denied.exitCode]).toEqual([`cannot read ${WRITE_ONLY}: permission denied`, WRITE_ONLY, 'EACCES', 1]);
    expect((denied.cause as NodeJS.ErrnoException).code).toBe('EACCES');
    expect(denied.hint).toBe(
      asRoot
        ? 'Even root was refused: look for a read-only mount, an immutable file (lsattr) or a security module (AppArmor) denying it.'
        : "nspawnctl works on root's files (/var/lib/machines, /var/lib/nspawnctl, /etc/systemd); run it as root.",
    );
  });

  test('writeAccess asks access(2) and writes nothing: ok for a writable file, missing for none, denied for a normal user on root\'s file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawnctl-fs-'));
    try {
      writeFileSync(join(dir, 'file'), 'x');
      const fs = createNodeFs(dir);
      expect(await fs.writeAccess('/file')).toBe('ok');
      expect(await fs.writeAccess('/nope')).toBe('missing');
      // Root may write a sysctl unless /proc/sys is mounted read-only (in a container): never 'denied'.
      const sysctl = await createNodeFs('/').writeAccess('/proc/sys/fs/inotify/max_user_instances');
      expect(asRoot ? ['ok', 'read-only'] : ['denied']).toContain(sysctl);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('what is missing stays missing (undefined, []), and other errors pass unchanged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawnctl-fs-'));
    try {
      writeFileSync(join(dir, 'file'), 'x');
      const fs = createNodeFs(dir);
      expect(await fs.stat('/nope')).toBeUndefined();
      expect(await fs.readText('/nope')).toBeUndefined();
      expect(await fs.listDir('/nope')).toEqual([]);
      // A file where a directory is needed is not a permission problem.
      const err = await fs.mkdir('/file/sub', 0o755).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).not.toBeInstanceOf(PermissionDeniedError);
      expect(err).toBeInstanceOf(NspawnctlError);
      expect((err as Error).message).toBe('/file exists and is not a directory');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
