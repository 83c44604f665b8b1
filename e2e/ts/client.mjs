// client.mjs drives the official TypeScript MCP SDK's client-side OAuth
// support against a running alterhost (started without --no-auth, with a
// short --access-token-ttl), the way a real MCP client and its person would:
//
//   discovery from the 401, dynamic registration, PKCE authorization with a
//   scripted person signing in (the printed sign-in link) and approving the
//   consent page, the token exchange, tools/list and a tool call; then,
//   after the access token expired, another call that the SDK gets through
//   by refreshing, without a second authorization.
//
// Usage: node client.mjs MCP_ENDPOINT SIGNIN_LINK
//    or: ALTERHOST_ENDPOINT=... ALTERHOST_SIGNIN_LINK=... node client.mjs
//
// It prints one JSON line of results to stdout and exits 0, or prints
// "client.mjs: FAIL: ..." to stderr and exits 1. Plain JavaScript for
// Node 20, no build step: cmd/alterhost/ts_test.go runs it.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const OVERALL_TIMEOUT_MS = 60_000;
const REDIRECT_URL = 'http://127.0.0.1:1/callback'; // never reached: the person stops at it
const TOKEN_WAIT_MS = Number(process.env.ALTERHOST_TOKEN_WAIT_MS ?? 2500); // --access-token-ttl 2s, plus a margin

function fail(msg) {
    process.stderr.write(`client.mjs: FAIL: ${msg}\n`);
    process.exit(1);
}

class Failure extends Error {}
function check(cond, msg) {
    if (!cond) throw new Failure(msg);
}

const timer = setTimeout(() => fail(`not done within ${OVERALL_TIMEOUT_MS / 1000} s`), OVERALL_TIMEOUT_MS);
timer.unref();

const endpoint = process.argv[2] ?? process.env.ALTERHOST_ENDPOINT;
const signinLink = process.argv[3] ?? process.env.ALTERHOST_SIGNIN_LINK;
if (!endpoint || !signinLink) {
    fail('usage: node client.mjs MCP_ENDPOINT SIGNIN_LINK (or ALTERHOST_ENDPOINT and ALTERHOST_SIGNIN_LINK)');
}
for (const [name, u] of [['endpoint', endpoint], ['sign-in link', signinLink]]) {
    const host = URL.canParse(u) ? new URL(u).hostname : '';
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) fail(`the ${name} ${u} is not a loopback URL`);
}

// ---------------------------------------------------------------------------
// The person: a browser made of fetch and a tiny cookie jar.

class Browser {
    constructor() {
        this.jar = new Map(); // origin -> Map(name -> value)
    }
    cookieHeader(url) {
        const cookies = this.jar.get(new URL(url).origin);
        return cookies ? [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') : '';
    }
    keep(url, res) {
        const origin = new URL(url).origin;
        for (const line of res.headers.getSetCookie()) {
            const [pair, ...attrs] = line.split(';');
            const eq = pair.indexOf('=');
            if (eq < 1) continue;
            const name = pair.slice(0, eq).trim();
            const value = pair.slice(eq + 1).trim();
            const expired = attrs.some(a => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
            if (!this.jar.has(origin)) this.jar.set(origin, new Map());
            if (expired || value === '') this.jar.get(origin).delete(name);
            else this.jar.get(origin).set(name, value);
        }
    }
    // fetch one request, never following redirects, with this browser's cookies.
    async request(url, init = {}) {
        const headers = new Headers(init.headers);
        const cookie = this.cookieHeader(url);
        if (cookie) headers.set('Cookie', cookie);
        const res = await fetch(url, { ...init, headers, redirect: 'manual' });
        this.keep(url, res);
        return res;
    }
    // get follows same-origin redirects, as a browser would, and returns the
    // final response with its URL.
    async get(url) {
        for (let i = 0; i < 5; i++) {
            const res = await this.request(url);
            if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
                const next = new URL(res.headers.get('location'), url);
                await res.body?.cancel();
                check(next.origin === new URL(url).origin, `GET ${url} redirected off-site to ${next}`);
                url = next.href;
                continue;
            }
            return { res, url };
        }
        throw new Failure(`GET ${url}: too many redirects`);
    }
}

function unescapeHTML(s) {
    return s
        .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
        .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&amp;/g, '&');
}

// approve opens the consent page at pageURL, posts its form with
// decision=approve, and returns where the approval redirects to, unfollowed.
async function approve(browser, pageURL) {
    const { res, url } = await browser.get(pageURL);
    const page = await res.text();
    const form = /<form method="post" action="([^"]*)"/.exec(page);
    check(res.status === 200 && form, `consent page ${url}: ${res.status}\n${page.slice(0, 2000)}`);
    const action = new URL(unescapeHTML(form[1]), url);
    const fields = new URLSearchParams();
    for (const m of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
        fields.set(unescapeHTML(m[1]), unescapeHTML(m[2]));
    }
    check(fields.has('csrf'), `consent page has no csrf field:\n${page.slice(0, 2000)}`);
    fields.set('decision', 'approve');
    const post = await browser.request(action.href, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: action.origin },
        body: fields.toString()
    });
    const location = post.headers.get('location');
    if (!((post.status === 302 || post.status === 303) && location)) {
        throw new Failure(`approving did not redirect: ${post.status} ${await post.text()}`);
    }
    await post.body?.cancel();
    return new URL(location, action);
}

// ---------------------------------------------------------------------------
// The client's side: an OAuthClientProvider kept in memory.

class MemoryProvider {
    constructor(onRedirect) {
        this.onRedirect = onRedirect;
        this.redirects = 0;
        this.savedTokens = [];
        this._client = undefined;
        this._tokens = undefined;
        this._verifier = undefined;
        this.lastState = undefined;
    }
    get redirectUrl() {
        return REDIRECT_URL;
    }
    get clientMetadata() {
        return {
            client_name: 'alterhost e2e (TypeScript SDK)',
            redirect_uris: [REDIRECT_URL],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    }
    state() {
        this.lastState = randomBytes(16).toString('base64url');
        return this.lastState;
    }
    clientInformation() {
        return this._client;
    }
    saveClientInformation(info) {
        this._client = info; // kept unchanged, issuer stamp included
    }
    tokens() {
        return this._tokens;
    }
    saveTokens(tokens) {
        this._tokens = tokens;
        this.savedTokens.push(tokens);
    }
    async redirectToAuthorization(url) {
        this.redirects++;
        await this.onRedirect(url);
    }
    saveCodeVerifier(v) {
        this._verifier = v;
    }
    codeVerifier() {
        if (!this._verifier) throw new Failure('no code verifier saved');
        return this._verifier;
    }
}

// ---------------------------------------------------------------------------
// What the SDK sends, recorded for the report (no secrets: token values and
// PKCE values are left out).

const seen = { register: null, authorize: null, authorize_response: null, token: [], mcp: [] };

async function recordingFetch(input, init) {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const res = await fetch(input, init);
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    if (url.pathname === '/register' && method === 'POST') {
        const body = JSON.parse(String(init.body));
        const reply = await res.clone().json().catch(() => null);
        seen.register = {
            status: res.status,
            request: body,
            response: reply && { ...reply, client_id: reply.client_id ? '(set)' : undefined, client_secret: reply.client_secret ? '(set)' : undefined }
        };
    } else if (url.pathname === '/token' && method === 'POST') {
        const p = new URLSearchParams(String(init.body));
        const headers = new Headers(init.headers);
        const entry = { status: res.status, grant_type: p.get('grant_type') };
        for (const k of ['resource', 'scope', 'redirect_uri']) if (p.has(k)) entry[k] = p.get(k);
        entry.client_id = p.has('client_id');
        entry.basic_auth = (headers.get('authorization') ?? '').startsWith('Basic ');
        if (!res.ok) entry.error = await res.clone().text();
        else {
            const t = await res.clone().json().catch(() => ({}));
            entry.response = { token_type: t.token_type, expires_in: t.expires_in, scope: t.scope, refresh_token: !!t.refresh_token };
        }
        seen.token.push(entry);
    } else if (url.href === new URL(endpoint).href) {
        const headers = new Headers(init?.headers);
        seen.mcp.push(`${method} ${res.status}${headers.has('authorization') ? '' : ' (no token)'}`);
    }
    return res;
}

// ---------------------------------------------------------------------------

async function main() {
    const browser = new Browser();

    // The person opens the link alterhost printed and presses Sign in,
    // keeping the cookie.
    {
        const { res, url } = await browser.get(signinLink);
        const page = await res.text();
        const form = /<form method="post" action="\/signin">/.exec(page);
        check(res.status === 200 && form, `sign-in link ${url}: ${res.status}\n${page.slice(0, 2000)}`);
        const fields = new URLSearchParams();
        for (const m of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
            fields.set(unescapeHTML(m[1]), unescapeHTML(m[2]));
        }
        const action = new URL('/signin', url);
        const post = await browser.request(action.href, {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: action.origin },
            body: fields.toString()
        });
        const done = await post.text();
        check(post.status === 200 && done.includes('Signed in'), `signing in: ${post.status}\n${done.slice(0, 2000)}`);
        check(browser.cookieHeader(signinLink) !== '', 'signing in set no session cookie');
    }

    let code;
    const provider = new MemoryProvider(async authorizationURL => {
        const q = authorizationURL.searchParams;
        seen.authorize = {};
        for (const [k, v] of q) seen.authorize[k] = k === 'code_challenge' || k === 'state' || k === 'client_id' ? '(set)' : v;
        const back = await approve(browser, authorizationURL.href);
        check(`${back.origin}${back.pathname}` === REDIRECT_URL, `approval redirected to ${back}, not ${REDIRECT_URL}`);
        const err = back.searchParams.get('error');
        check(!err, `authorization error: ${err} ${back.searchParams.get('error_description') ?? ''}`);
        check(back.searchParams.get('state') === provider.lastState, `state ${back.searchParams.get('state')} != ${provider.lastState}`);
        const iss = back.searchParams.get('iss');
        check(iss === null || iss === provider.clientInformation()?.issuer || iss + '/' === provider.clientInformation()?.issuer,
            `iss ${iss} does not name the authorization server ${provider.clientInformation()?.issuer}`);
        seen.authorize_response = { params: [...back.searchParams.keys()].sort(), iss };
        code = back.searchParams.get('code');
        check(code, `approval redirect without a code: ${back}`);
    });

    const client = new Client({ name: 'alterhost-e2e-ts', version: '1' });
    const newTransport = () => new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider, fetch: recordingFetch });

    let transport = newTransport();
    try {
        await client.connect(transport);
        throw new Failure('connected without authorizing: the server should have answered 401');
    } catch (e) {
        if (!(e instanceof UnauthorizedError)) throw e;
    }
    check(provider.redirects === 1 && code, `after the first connect: ${provider.redirects} authorizations, code ${code ? 'set' : 'missing'}`);
    await transport.finishAuth(code);
    const first = provider.tokens();
    check(first?.access_token && first?.refresh_token, `finishAuth saved no access and refresh token: ${JSON.stringify(Object.keys(first ?? {}))}`);

    transport = newTransport();
    await client.connect(transport);

    const { tools } = await client.listTools();
    const names = tools.map(t => t.name).sort();
    check(names.includes('reverse'), `tools: ${names.join(',')}; want reverse among them`);

    const textOf = res => (res.content ?? []).filter(c => c.type === 'text').map(c => c.text).join('');
    let res = await client.callTool({ name: 'reverse', arguments: { text: 'abc' } });
    check(!res.isError && textOf(res) === 'cba', `reverse abc: ${JSON.stringify(res)}`);

    // The access token expires; the SDK refreshes on the 401 and retries.
    await new Promise(r => setTimeout(r, TOKEN_WAIT_MS));
    res = await client.callTool({ name: 'reverse', arguments: { text: 'xy' } });
    check(!res.isError && textOf(res) === 'yx', `reverse xy after the access token expired: ${JSON.stringify(res)}`);

    const now = provider.tokens();
    check(provider.redirects === 1, `${provider.redirects} authorizations; want 1 (the refresh needs none)`);
    check(now.access_token !== first.access_token, 'the access token did not change: no refresh happened');
    check(now.refresh_token !== first.refresh_token, 'the refresh token did not rotate');
    const refreshes = seen.token.filter(t => t.grant_type === 'refresh_token');
    check(refreshes.length >= 1 && refreshes.every(t => t.status === 200), `refresh requests: ${JSON.stringify(refreshes)}`);

    await client.close();

    const sdkVersion = JSON.parse(readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8')).version;
    return {
        ok: true,
        sdk: sdkVersion,
        node: process.version,
        tools: names,
        authorizations: provider.redirects,
        tokens_saved: provider.savedTokens.length,
        refreshed: true,
        issuer: provider.clientInformation()?.issuer,
        sent: seen
    };
}

main().then(
    result => {
        process.stdout.write(JSON.stringify(result) + '\n');
        process.exit(0);
    },
    e => fail(e instanceof Failure ? e.message : e?.stack ?? String(e))
);
