// The reference OAuth server: oidc-provider issuing ES256 at+jwt access tokens by client_credentials to a
// client authenticated with private_key_jwt, the same grant our /token serves to the `backend` client.
// Run: node bench/node/peer.mjs CONFIG.json PORT (CONFIG: issuer, issuer_jwk, client_id, client_jwk, resource, scope)
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [configPath, port] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: config.client_id,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      id_token_signed_response_alg: 'ES256',
      jwks: { keys: [config.client_jwk] },
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: config.scope,
    },
  ],
  jwks: { keys: [config.issuer_jwk] },
  ttl: { ClientCredentials: 300 },
  scopes: [config.scope],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      getResourceServerInfo: () => ({
        scope: config.scope,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.proxy = false;

// /healthz, as our servers answer, so the bench waits for both the same way.
const callback = provider.callback();
const { createServer } = await import('node:http');
createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  callback(req, res);
}).listen(Number(port), '127.0.0.1');
