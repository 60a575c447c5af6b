// createNodeHttp against real sockets on 127.0.0.1: a mirror, a proxy that takes absolute URLs,
// a proxy that opens CONNECT tunnels, and servers that refuse or never answer.
import * as http from 'node:http';
import * as net from 'node:net';
import { AddressInfo } from 'node:net';
import { createNodeHttp, HttpError, proxyFromEnvironment } from '../../src/host/http';

interface Seen {
  method?: string;
  url?: string;
  host?: string;
  auth?: string;
}

const servers: net.Server[] = [];
// Local servers answer at once; this bound only ends a test that is broken. It must not be short:
// on a loaded 2-core machine a TLS handshake through the tunnel took more than 5 s.
const ANSWER_MS = 60_000;

/** An HTTP server on a free port of 127.0.0.1 that records each request and answers with `answer`. */
async function serve(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void, seen: Seen[] = []): Promise<{ port: number; seen: Seen[]; server: http.Server }> {
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, host: req.headers.host, auth: req.headers['proxy-authorization'] });
    answer(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

/** A port nothing listens on (a server is opened and closed to find one). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    (s as http.Server).closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

const status = (code: number, headers: Record<string, string> = {}) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(code, headers);
  res.end();
};

describe('createNodeHttp().head', () => {
  test('asks a mirror directly with HEAD: its status, and a redirect\'s location', async () => {
    const mirror = await serve((req, res) => (req.url === '/debian/dists/bookworm/Release' ? status(200)(req, res) : req.url === '/moved' ? status(301, { Location: '/debian/' })(req, res) : status(404)(req, res)));
    const h = createNodeHttp();
    const base = `http://127.0.0.1:${mirror.port}`;
    expect(await h.head(`${base}/debian/dists/bookworm/Release`, { timeoutMs: ANSWER_MS })).toEqual({ status: 200 });
    expect(await h.head(`${base}/debian/dists/bookwrom/Release`, { timeoutMs: ANSWER_MS })).toEqual({ status: 404 });
    expect(await h.head(`${base}/moved`, { timeoutMs: ANSWER_MS })).toEqual({ status: 301, location: '/debian/' });
    expect(mirror.seen.map((s) => `${s.method} ${s.url}`)).toEqual(['HEAD /debian/dists/bookworm/Release', 'HEAD /debian/dists/bookwrom/Release', 'HEAD /moved']);
  });

  test('through an explicit proxy (a machine\'s aptProxy): the whole URL goes to the proxy, which answers for the mirror', async () => {
    const proxy = await serve(status(200));
    const h = createNodeHttp({ http_proxy: 'http://127.0.0.1:1' });
    const r = await h.head('http://deb.debian.org/debian/dists/bookworm/Release', { timeoutMs: ANSWER_MS, proxy: `http://127.0.0.1:${proxy.port}` });
    expect(r).toEqual({ status: 200, via: `http://127.0.0.1:${proxy.port}` });
    expect(proxy.seen).toEqual([{ method: 'HEAD', url: 'http://deb.debian.org/debian/dists/bookworm/Release', host: 'deb.debian.org', auth: undefined }]);
  });

  test('through the environment\'s http_proxy, with its credentials; no_proxy names hosts asked directly', async () => {
    const proxy = await serve(status(200));
    const mirror = await serve(status(404));
    const h = createNodeHttp({ http_proxy: `http://joe:s%40cret@127.0.0.1:${proxy.port}`, no_proxy: 'localhost, 127.0.0.1' });
    expect(await h.head('http://deb.debian.org/debian/dists/trixie/Release', { timeoutMs: ANSWER_MS })).toEqual({ status: 200, via: `http://joe:s%40cret@127.0.0.1:${proxy.port}` });
    expect(proxy.seen).toEqual([{ method: 'HEAD', url: 'http://deb.debian.org/debian/dists/trixie/Release', host: 'deb.debian.org', auth: `Basic ${Buffer.from('joe:s@cret').toString('base64')}` }]);
    expect(await h.head(`http://127.0.0.1:${mirror.port}/debian/dists/trixie/Release`, { timeoutMs: ANSWER_MS })).toEqual({ status: 404 });
    expect(mirror.seen.map((s) => s.url)).toEqual(['/debian/dists/trixie/Release']);
  });

  test('https through a proxy: a CONNECT tunnel to the mirror\'s host and port, then TLS inside it for that name', async () => {
    // The far end of the tunnel records what the client sends first: a TLS ClientHello naming the mirror.
    const hello: Buffer[] = [];
    const tls = net.createServer((socket) => socket.once('data', (chunk) => {
      hello.push(chunk);
      socket.destroy();
    }));
    servers.push(tls);
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    const tlsPort = (tls.address() as AddressInfo).port;
    const connects: string[] = [];
    const proxy = await serve(status(405));
    proxy.server.on('connect', (req: http.IncomingMessage, client: net.Socket) => {
      connects.push(req.url ?? '');
      const upstream = net.connect(tlsPort, '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    const h = createNodeHttp({ https_proxy: `http://127.0.0.1:${proxy.port}` });
    const err = await h.head('https://mirror.example.org:8443/debian/dists/bookworm/Release', { timeoutMs: ANSWER_MS }).catch((e) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(connects).toEqual(['mirror.example.org:8443']);
    // The request went only through the tunnel: never a lookup of the mirror's name here (this
    // machine cannot resolve it; through a proxy it need not).
    expect(err.message).not.toMatch(/resolve|ENOTFOUND|EAI_AGAIN/);
    expect(hello[0][0]).toBe(0x16); // a TLS handshake record
    expect(hello[0].includes(Buffer.from('mirror.example.org'))).toBe(true); // its server name
  });

  test('a proxy that will not open a tunnel: HttpError naming its answer', async () => {
    const proxy = await serve(status(200));
    proxy.server.on('connect', (_req: http.IncomingMessage, client: net.Socket) => client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'));
    const err = await createNodeHttp().head('https://mirror.example.org/debian/dists/bookworm/Release', { timeoutMs: ANSWER_MS, proxy: `http://127.0.0.1:${proxy.port}` }).catch((e) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).reason).toBe('the proxy refused to open a tunnel (HTTP 403)');
    expect((err as Error).message).toBe(`https://mirror.example.org/debian/dists/bookworm/Release (through proxy http://127.0.0.1:${proxy.port}): the proxy refused to open a tunnel (HTTP 403)`);
  });

  test('nothing listening: HttpError "connection refused", naming the URL', async () => {
    const port = await deadPort();
    const err = await createNodeHttp().head(`http://127.0.0.1:${port}/debian/dists/bookworm/Release`, { timeoutMs: ANSWER_MS }).catch((e) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).message).toBe(`http://127.0.0.1:${port}/debian/dists/bookworm/Release: connection refused`);
  });

  test('a server that never answers: HttpError once the time given is up, and its socket is closed', async () => {
    const silent = await serve(() => undefined);
    const closed = new Promise<void>((resolve) => silent.server.on('connection', (s: net.Socket) => s.on('close', () => resolve())));
    const err = await createNodeHttp().head(`http://127.0.0.1:${silent.port}/x`, { timeoutMs: 200 }).catch((e) => e);
    expect((err as HttpError).reason).toBe('no answer within 0.2 s');
    await closed;
  });

  test('a proxy written without its scheme (http_proxy=host:port) is an http:// proxy', async () => {
    const proxy = await serve(status(200));
    expect(await createNodeHttp({ http_proxy: `127.0.0.1:${proxy.port}` }).head('http://deb.debian.org/debian/dists/bookworm/Release', { timeoutMs: ANSWER_MS })).toEqual({ status: 200, via: `127.0.0.1:${proxy.port}` });
    expect(proxy.seen.map((s) => s.url)).toEqual(['http://deb.debian.org/debian/dists/bookworm/Release']);
  });

  test('a proxy that is not http:// is refused without a request', async () => {
    const err = await createNodeHttp().head('http://deb.debian.org/debian/dists/bookworm/Release', { timeoutMs: 1000, proxy: 'socks5://127.0.0.1:1080' }).catch((e) => e);
    expect((err as HttpError).reason).toBe('only http:// proxies are supported, not socks5://');
  });
});

describe('proxyFromEnvironment', () => {
  const env = { http_proxy: 'http://proxy:3128', https_proxy: 'http://tls-proxy:3128', no_proxy: '.lan,mirror.example.org:80' };
  test.each([
    ['http://deb.debian.org/debian', 'http://proxy:3128'],
    ['https://deb.debian.org/debian', 'http://tls-proxy:3128'],
    ['http://apt.lan/debian', undefined],
    ['http://lan/debian', undefined],
    ['http://mirror.example.org/debian', undefined],
    ['http://sub.mirror.example.org/debian', undefined],
    ['http://notmirror.example.org/debian', 'http://proxy:3128'],
  ])('%s -> %s', (url, proxy) => {
    expect(proxyFromEnvironment(new URL(url), env)).toBe(proxy);
  });

  test('no_proxy=* turns every proxy off; no variable set means no proxy', () => {
    expect(proxyFromEnvironment(new URL('http://deb.debian.org/'), { ...env, no_proxy: '*' })).toBeUndefined();
    expect(proxyFromEnvironment(new URL('http://deb.debian.org/'), {})).toBeUndefined();
  });
});
