// A real OpenID provider (panva's oidc-provider) on loopback, for `meshplane login`'s tests:
// the device authorization grant, refresh tokens, and the development login form, where any
// login name signs in as the account of that name.
// Usage: node provider.mjs PORT NODE_MODULES (where `npm install oidc-provider` put it)
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const port = Number(process.argv[2]);
const { default: Provider } = await import(pathToFileURL(join(process.argv[3], 'oidc-provider', 'lib', 'index.js')));
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'meshplane-cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  }],
  features: { deviceFlow: { enabled: true }, devInteractions: { enabled: true } },
  scopes: ['openid', 'offline_access'],
  ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 3600), DeviceCode: 600 },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
