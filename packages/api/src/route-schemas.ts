import { Type } from 'typebox'
import { ClusterTotals, ErrorBody, NodeList } from '@tornado/shared'

/*
 * Route schemas as the OpenAPI document (/swagger) shows them: the same TypeBox schemas the responses are
 * serialised with, plus descriptions and the product page's example bodies.
 */

/** Either credential opens every /dashboard/* GET: the header for scripts, the session cookie for the page. */
export const DASHBOARD_SECURITY: Record<string, string[]>[] = [{ apiKey: [] }, { sessionCookie: [] }]

const errorBody = (description: string, examples: ErrorBody[]) =>
  Type.Object(ErrorBody.properties, { additionalProperties: false, description, examples })

export const Unauthorized = errorBody(
  'No accepted credential: the x-api-key header is missing or empty, carries a key that is not configured, or (GET only, without the header) the session cookie is invalid or expired',
  [{ error: 'Missing x-api-key header' }, { error: 'Invalid API Key' }, { error: 'Invalid or expired session' }],
)

export const KeyRequired = errorBody('No accepted x-api-key header (a session cookie does not open this route)', [
  { error: 'Missing x-api-key header' },
  { error: 'Invalid API Key' },
])

export const TooManyFailures = errorBody(
  'This client address failed to authenticate AUTH_FAILURE_LIMIT times within a minute: refused, even with a right key, until the Retry-After header\'s seconds have passed',
  [{ error: 'Too many failed authentications from this address; retry in 60 s' }],
)

export const RedisUnavailable = errorBody(
  'Redis is down or not answering; the answer comes within about a second and the API recovers by itself',
  [{ error: 'Redis unavailable' }],
)

export const BadQuery = errorBody('A query parameter is not what the route accepts', [{ error: 'querystring/nodes must be equal to one of the allowed values' }])

export const ClusterTotalsBody = Type.Object(ClusterTotals.properties, {
  additionalProperties: false,
  description: 'The sums over every node whose last heartbeat is at most STALE_AFTER_MS (30 s) old',
  examples: [{ total_downloading: 45, total_muxing: 12, total_uploading: 8 }],
})

export const NodeListBody = Type.Object(NodeList.properties, {
  additionalProperties: false,
  description: 'Every node seen within STALE_AFTER_MS, sorted by id',
  examples: [
    {
      nodes: [
        { id: 'worker-1', hostname: 'worker-1.internal', ip: '10.0.0.11', downloading: 20, muxing: 5, uploading: 3, last_seen_ms_ago: 412, status: 'online' },
        { id: 'worker-2', hostname: 'worker-2.internal', ip: '10.0.0.12', downloading: 15, muxing: 4, uploading: 0, last_seen_ms_ago: 8210, status: 'stale' },
      ],
    },
  ],
})

export const SessionBody = Type.Object(
  { expires_in_ms: Type.Integer({ minimum: 1, description: 'How long the session cookie stays valid' }) },
  { additionalProperties: false, description: 'Session cookie set (HttpOnly, SameSite=Strict, Path=/dashboard)', examples: [{ expires_in_ms: 900000 }] },
)

export const STREAM_EXAMPLE = [
  'event: cluster',
  'data: {"total_downloading":45,"total_muxing":12,"total_uploading":8}',
  '',
  'event: nodes',
  'data: {"nodes":[{"id":"worker-1","hostname":"worker-1.internal","ip":"10.0.0.11","downloading":45,"muxing":12,"uploading":8,"last_seen_ms_ago":412,"status":"online"}]}',
  '',
  '',
].join('\n')
