// A real OpenID provider (panva's certified oidc-provider) for the tests, on loopback.
//
// Environment: OIDC_PORT, OIDC_ISSUER, OIDC_JWKS (the private signing keys as a JWKS,
// the first of each algorithm signs; one is generated when it is unset), OIDC_AUDIENCE (the resource indicator tokens are
// for by default). Clients use client_credentials with resource indicators, which
// gives JWT access tokens (RFC 9068) whose `sub` is the client's id:
//   writer: projects:read projects:write; reader: projects:read; other: both (a second
//   owner); brief: both, tokens living 1 s.
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = process.env.OIDC_ISSUER;
const audience = process.env.OIDC_AUDIENCE;
const jwks = process.env.OIDC_JWKS ? JSON.parse(process.env.OIDC_JWKS) : await generated();

async function generated() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { keys: [{ ...(await exportJWK(privateKey)), kid: 'generated', alg: 'RS256', use: 'sig' }] };
}
const secret = 'test-secret-of-a-test-provider-0123456789';
const both = 'projects:read projects:write';
const client = (id, scope) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope,
});

const provider = new Provider(issuer, {
  clients: [
    client('writer', both),
    client('reader', 'projects:read'),
    client('other', both),
    client('brief', both),
  ],
  jwks,
  scopes: ['projects:read', 'projects:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: both,
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: client.clientId === 'brief' ? 1 : 3600,
        jwt: { sign: { alg: process.env.OIDC_ALG || 'RS256' } },
      }),
    },
  },
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
