// The network side of the Host seam: one HEAD request, directly or through an HTTP proxy, so
// plan can ask a mirror whether a suite exists before anything is bootstrapped from it.
import * as http from 'node:http';
import * as https from 'node:https';
import { connect as tlsConnect } from 'node:tls';

export interface HeadOptions {
  /** The whole request (proxy, tunnel, TLS and answer) must take no longer. */
  timeoutMs: number;
  /**
   * An http:// proxy to send the request through (a machine's aptProxy). When absent, the
   * environment's http_proxy / https_proxy is used, as apt would.
   */
  proxy?: string;
}

export interface HeadResult {
  /** The HTTP status of the answer (redirects are not followed: see `location`). */
  status: number;
  /** The Location header of a redirect. */
  location?: string;
  /** The proxy the request went through, if any. */
  via?: string;
}

// What the rest of nspawnctl may do on the network; FakeHttp in the tests implements it too.
export interface Http {
  /** Sends `HEAD url`; resolves with the answer's status, rejects with HttpError when none came. */
  head(url: string, options: HeadOptions): Promise<HeadResult>;
}

/** No HTTP answer came: refused, unresolvable, reset, timed out, or a proxy that would not tunnel. */
export class HttpError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
    readonly via?: string,
    cause?: unknown,
  ) {
    super(`${url}${via ? ` (through proxy ${via})` : ''}: ${reason}`, cause === undefined ? undefined : { cause });
    this.name = 'HttpError';
  }
}

/** The proxy settings of an environment: apt's variables (lower case), and no_proxy. */
export interface ProxyEnvironment {
  http_proxy?: string;
  https_proxy?: string;
  no_proxy?: string;
}

/** The proxy for `url` from the environment, or undefined (none set, or the host is in no_proxy). */
export function proxyFromEnvironment(url: URL, env: ProxyEnvironment): string | undefined {
  const proxy = url.protocol === 'https:' ? env.https_proxy : env.http_proxy;
  if (!proxy) return undefined;
  const host = url.hostname.toLowerCase();
  for (const raw of (env.no_proxy ?? '').split(',')) {
    const entry = raw.trim().toLowerCase().replace(/:\d+$/, '');
    if (entry === '') continue;
    if (entry === '*') return undefined;
    const suffix = entry.startsWith('.') ? entry : `.${entry}`;
    if (host === entry.replace(/^\./, '') || host.endsWith(suffix)) return undefined;
  }
  return proxy;
}

/** The real network, with `env`'s proxies (the caller passes process.env's). */
export function createNodeHttp(env: ProxyEnvironment = {}): Http {
  return {
    head(url, options) {
      const target = new URL(url);
      const proxy = options.proxy ?? proxyFromEnvironment(target, env);
      return headRequest(target, proxy, options.timeoutMs);
    },
  };
}

function headRequest(target: URL, proxyText: string | undefined, timeoutMs: number): Promise<HeadResult> {
  return new Promise((resolve, reject) => {
    const cleanups: (() => void)[] = [];
    let settled = false;
    const finish = (err: Error | undefined, result?: HeadResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const c of cleanups) c();
      if (err) reject(err);
      else resolve(result!);
    };
    const fail = (reason: string, cause?: unknown) => finish(new HttpError(target.href, reason, proxyText, cause));
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    const onResponse = (res: http.IncomingMessage) => {
      res.resume();
      const location = res.headers.location;
      finish(undefined, { status: res.statusCode ?? 0, ...(location ? { location } : {}), ...(proxyText ? { via: proxyText } : {}) });
    };
    const onError = (err: Error) => fail(describeNetworkError(err), err);
    const track = (req: http.ClientRequest) => {
      cleanups.push(() => req.destroy());
      req.on('error', onError);
      return req;
    };

    let proxy: URL | undefined;
    try {
      // "proxy:3128" in http_proxy means http://proxy:3128, as curl and apt read it.
      proxy = proxyText ? new URL(proxyText.includes('://') ? proxyText : `http://${proxyText}`) : undefined;
    } catch (err) {
      return fail(`the proxy ${proxyText} is not a URL`, err);
    }
    if (proxy && proxy.protocol !== 'http:') return fail(`only http:// proxies are supported, not ${proxy.protocol}//`);
    const auth = proxy && proxy.username ? { 'Proxy-Authorization': `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}` } : {};
    const path = `${target.pathname}${target.search}`;

    if (!proxy) {
      const lib = target.protocol === 'https:' ? https : http;
      track(lib.request(target, { method: 'HEAD', agent: false }, onResponse)).end();
      return;
    }
    const proxyOptions = { host: proxy.hostname, port: Number(proxy.port || 80), agent: false as const };
    if (target.protocol === 'http:') {
      // A plain request to the proxy, naming the whole URL (what apt sends through a proxy).
      track(http.request({ ...proxyOptions, method: 'HEAD', path: target.href, headers: { Host: target.host, ...auth } }, onResponse)).end();
      return;
    }
    // https through an http proxy: a CONNECT tunnel, then TLS to the mirror inside it.
    const port = Number(target.port || 443);
    const refused = (res: http.IncomingMessage) => {
      res.resume();
      fail(`the proxy refused to open a tunnel (HTTP ${res.statusCode})`);
    };
    const connect = track(http.request({ ...proxyOptions, method: 'CONNECT', path: `${target.hostname}:${port}`, headers: { Host: `${target.hostname}:${port}`, ...auth } }, refused));
    connect.on('connect', (res, socket) => {
      cleanups.push(() => socket.destroy());
      if (res.statusCode !== 200) return fail(`the proxy refused to open a tunnel (HTTP ${res.statusCode})`);
      socket.on('error', onError);
      const tls = tlsConnect({ socket, servername: target.hostname });
      tls.on('error', onError);
      cleanups.push(() => tls.destroy());
      // No agent: with one (even agent: false, which makes a fresh one) Node ignores
      // createConnection and connects to the mirror by itself, around the proxy.
      track(https.request({ host: target.hostname, port, method: 'HEAD', path, createConnection: () => tls }, onResponse)).end();
    });
    connect.end();
  });
}

/** A Node network error in a few words: the errno code with what it means here. */
function describeNetworkError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN': {
      const name = (err as { hostname?: string }).hostname;
      return `${name ? `${name} does` : 'the name does'} not resolve (${code})`;
    }
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route (${code})`;
    default:
      return code ? `${code}: ${err.message}` : err.message;
  }
}
