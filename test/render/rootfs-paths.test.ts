// The rootfs paths nspawnctl generates are listed in one place (src/render/rootfs-paths.ts), and
// `files:` may claim none of them: a machine with every feature on renders exactly the listed
// paths (besides its own files), and each of them is refused as a `files:` path. (The paths apply
// writes on its own are checked against a real run in test/commands/rootfs-paths.test.ts.)
import { parseManifest } from '../../src/manifest/load';
import { reservedPathProblem } from '../../src/manifest/schema';
import { renderRootfsEntries } from '../../src/render/rootfs-files';
import { GENERATED_ROOTFS_PATHS } from '../../src/render/rootfs-paths';

/** Every key that makes the renderer write a file of its own inside the machine, and one file. */
const EVERYTHING = `defaults:
  aptProxy: http://apt-cache.internal:3142
networks:
  lan: { subnet: 10.0.0.0/24 }
machines:
  web:
    hostname: web.internal
    network: { bridge: lan, address: 10.0.0.2 }
    dns: [10.0.0.1]
    environment: { TZ: UTC }
    authorizedKeys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGU me@example.org]
    files: [{ path: /etc/motd, content: "hi\\n" }]
    health: { command: [/bin/true] }
    autoUpgrade: { schedule: weekly }
`;

describe('generated rootfs paths', () => {
  const machine = parseManifest('machines.yaml', EVERYTHING).machines.web;
  const rendered = renderRootfsEntries(machine, 'machines.yaml').map((e) => e.path);
  const own = machine.files.map((f) => f.path);

  test('a machine with every feature on renders exactly the listed paths, besides its files', () => {
    const listed = GENERATED_ROOTFS_PATHS.filter((g) => g.key !== undefined).map((g) => g.path);
    expect(rendered.filter((p) => !own.includes(p)).sort()).toEqual([...listed].sort());
  });

  test('every listed path, rendered or written by apply, is refused as a files: path', () => {
    for (const g of GENERATED_ROOTFS_PATHS) expect({ path: g.path, problem: reservedPathProblem(g.path) }).toEqual({ path: g.path, problem: expect.stringContaining('written by nspawnctl itself') });
  });

  test('every directory above a listed path, and a path below one, is refused', () => {
    for (const g of GENERATED_ROOTFS_PATHS) {
      const parts = g.path.split('/').slice(1, -1);
      const above = parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
      for (const dir of above) expect({ dir, problem: reservedPathProblem(dir) }).toEqual({ dir, problem: expect.stringContaining('is a directory holding') });
      expect(reservedPathProblem(`${g.path}/x`)).toContain(`is below ${g.path}`);
    }
  });

  test('the machine\'s own file is not reserved', () => {
    expect(own.map(reservedPathProblem)).toEqual([undefined]);
  });
});
