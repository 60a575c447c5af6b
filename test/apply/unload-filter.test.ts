// unloadFilter: deletes nspawnctl's chain of a network, the table once no chain is left, and
// makes systemd forget the removed boot unit. Other tables are never named.
import { unloadFilter } from '../../src/apply/apply';
import { FakeHost } from '../helpers/fake-host';

const argvs = (host: FakeHost) => host.runner.calls.map((c) => [c.file, ...c.args].join(' '));

test('the last chain: chain, then the empty table, then daemon-reload', async () => {
  const host = new FakeHost();
  host.runner.on(['nft', 'delete', 'chain', 'bridge', 'nspawnctl', 'isolate-br0'], {});
  host.runner.on(['nft', '-j', 'list', 'table', 'bridge', 'nspawnctl'], { stdout: '{"nftables": [{"metainfo": {}}, {"table": {"family": "bridge", "name": "nspawnctl", "handle": 1}}]}' });
  host.runner.on(['nft', 'delete', 'table', 'bridge', 'nspawnctl'], {});
  host.runner.on(['systemctl', 'daemon-reload'], {});
  await unloadFilter(host, 'nspawnctl', 'isolate-br0');
  expect(argvs(host)).toEqual([
    'nft delete chain bridge nspawnctl isolate-br0',
    'nft -j list table bridge nspawnctl',
    'nft delete table bridge nspawnctl',
    'systemctl daemon-reload',
  ]);
});

test("another network's chain is still there: the table stays", async () => {
  const host = new FakeHost();
  host.runner.on(['nft', 'delete', 'chain', 'bridge', 'nspawnctl', 'isolate-br0'], {});
  host.runner.on(['nft', '-j', 'list', 'table', 'bridge', 'nspawnctl'], {
    stdout: '{"nftables": [{"table": {"family": "bridge", "name": "nspawnctl"}}, {"chain": {"family": "bridge", "table": "nspawnctl", "name": "isolate-br1"}}]}',
  });
  host.runner.on(['systemctl', 'daemon-reload'], {});
  await unloadFilter(host, 'nspawnctl', 'isolate-br0');
  expect(argvs(host)).toEqual(['nft delete chain bridge nspawnctl isolate-br0', 'nft -j list table bridge nspawnctl', 'systemctl daemon-reload']);
});
