// The autoUpgrade key: how defaults and machines combine, and every way it can be wrong, each
// with its exact located message (exit code 2).
import { parseManifest } from '../../src/manifest/load';
import { problems } from '../helpers/manifest-problems';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const NET = ['networks:', '  lan: { subnet: 10.0.0.0/24 }'];


describe('autoUpgrade resolves from defaults and the machine', () => {
  const manifest = parseManifest(
    'machines.yaml',
    yaml(
      'defaults:',
      '  autoUpgrade: { schedule: weekly }',
      ...NET,
      'machines:',
      '  a: { network: { bridge: lan, address: 10.0.0.2 } }',
      '  b: { network: { bridge: lan, address: 10.0.0.3 }, autoUpgrade: { schedule: daily } }',
      '  c: { network: { bridge: lan, address: 10.0.0.4 }, autoUpgrade: false }',
      '  d: { network: { bridge: lan, address: 10.0.0.5 }, autoUpgrade: {} }',
    ),
  );

  test('defaults apply, a machine replaces them, false turns them off, {} is daily', () => {
    const got = Object.fromEntries(Object.values(manifest.machines).map((m) => [m.name, m.autoUpgrade ?? 'off']));
    expect(got).toEqual({ a: { schedule: 'weekly' }, b: { schedule: 'daily' }, c: 'off', d: { schedule: 'daily' } });
  });

  test('without the key no machine upgrades by itself', () => {
    const m = parseManifest('machines.yaml', yaml(...NET, 'machines:', '  a: { network: { bridge: lan, address: 10.0.0.2 } }')).machines.a;
    expect(m.autoUpgrade).toBeUndefined();
    expect('autoUpgrade' in m).toBe(false);
  });
});

describe('a wrong autoUpgrade is located', () => {
  test('an unknown schedule, at autoUpgrade, naming the part and the choices', () => {
    expect(problems(yaml(...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', '    autoUpgrade: { schedule: hourly }'))).toEqual([
      // The union of a mapping and false is located at the key, naming the part that is wrong (as for bind).
      'machines.yaml:6:18: machines.a.autoUpgrade: schedule: expected one of daily, weekly, got "hourly"',
    ]);
  });

  test('true, a string or a list: the forms it takes', () => {
    for (const value of ['true', 'daily', '[daily]']) {
      expect(problems(yaml(...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', `    autoUpgrade: ${value}`))).toEqual([
        'machines.yaml:6:18: machines.a.autoUpgrade: expected { schedule: daily } (or weekly), or false',
      ]);
    }
  });

  test('an unknown key inside, with a suggestion', () => {
    expect(problems(yaml(...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', '    autoUpgrade: { schedul: daily }'))[0]).toMatch(
      /^machines\.yaml:6:20: machines\.a\.autoUpgrade\.schedul: unknown key \(did you mean schedule\?\)/,
    );
  });

  test('a read-only machine: at its own autoUpgrade', () => {
    expect(problems(yaml(...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', '    security: { readOnly: true }', '    autoUpgrade: { schedule: daily }'))).toEqual([
      'machines.yaml:7:18: machines.a.autoUpgrade: autoUpgrade needs a writable root, but machine a is read-only (security.readOnly)',
    ]);
  });

  test('from defaults on a read-only machine: at what makes the root read-only, saying how to turn it off', () => {
    expect(problems(yaml('defaults:', '  autoUpgrade: { schedule: daily }', ...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', '    security: { readOnly: true }'))).toEqual([
      'machines.yaml:8:27: machines.a.security.readOnly: autoUpgrade (from defaults) needs a writable root, but machine a is read-only (security.readOnly); set autoUpgrade: false on this machine',
    ]);
  });

  test('read-only from defaults too: at defaults.security.readOnly', () => {
    expect(problems(yaml('defaults:', '  autoUpgrade: { schedule: daily }', '  security: { readOnly: true }', ...NET, 'machines:', '  a: { network: { bridge: lan, address: 10.0.0.2 } }'))).toEqual([
      'machines.yaml:3:25: defaults.security.readOnly: autoUpgrade (from defaults) needs a writable root, but machine a is read-only (security.readOnly); set autoUpgrade: false on this machine',
    ]);
  });

  test('a volatile machine: its upgrades would be lost', () => {
    expect(problems(yaml(...NET, 'machines:', '  a:', '    network: { bridge: lan, address: 10.0.0.2 }', '    security: { volatile: state }', '    autoUpgrade: { schedule: daily }'))).toEqual([
      'machines.yaml:7:18: machines.a.autoUpgrade: autoUpgrade needs a root whose changes last, but machine a is volatile (security.volatile: state); its upgrades would be lost at the next start',
    ]);
  });

  test('a machine without a network: apt inside cannot download', () => {
    expect(problems(yaml('machines:', '  solo:', '    autoUpgrade: { schedule: daily }'))).toEqual([
      'machines.yaml:3:18: machines.solo.autoUpgrade: autoUpgrade needs a network: apt inside machine solo downloads the upgrades',
    ]);
    expect(problems(yaml('defaults:', '  autoUpgrade: { schedule: daily }', 'machines:', '  solo: {}'))).toEqual([
      'machines.yaml:2:16: defaults.autoUpgrade: autoUpgrade (from defaults) needs a network: apt inside machine solo downloads the upgrades; set autoUpgrade: false on this machine',
    ]);
  });

  test('false on such machines is accepted', () => {
    const m = parseManifest('machines.yaml', yaml('defaults:', '  autoUpgrade: { schedule: daily }', 'machines:', '  solo: { autoUpgrade: false }', '  ro: { autoUpgrade: false, security: { readOnly: true } }'));
    expect([m.machines.solo.autoUpgrade, m.machines.ro.autoUpgrade]).toEqual([undefined, undefined]);
  });
});
