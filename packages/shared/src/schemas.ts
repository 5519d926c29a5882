import { Type, type Static } from 'typebox'

/** Upper bound for one node's count of one stage: far above any real node, low enough that sums stay exact. */
export const MAX_JOB_COUNT = 1_000_000

const jobCount = (description: string) =>
  Type.Integer({ minimum: 0, maximum: MAX_JOB_COUNT, description })

/** What one node is doing right now; the body of the agent's `PUT /counts`. */
export const JobCounts = Type.Object(
  {
    downloading: jobCount('Videos this node is downloading right now'),
    muxing: jobCount('Videos this node is muxing with FFmpeg right now'),
    uploading: jobCount('Files this node is uploading to S3 right now'),
  },
  { additionalProperties: false },
)
export type JobCounts = Static<typeof JobCounts>

export const STAGES = ['downloading', 'muxing', 'uploading'] as const
export type Stage = (typeof STAGES)[number]

export const ZERO_COUNTS: Readonly<JobCounts> = Object.freeze({ downloading: 0, muxing: 0, uploading: 0 })

/** The body of `GET /dashboard/cluster`, field for field as the product's API page publishes it. */
export const ClusterTotals = Type.Object(
  {
    total_downloading: Type.Integer({ minimum: 0, description: 'Videos being downloaded across all live nodes' }),
    total_muxing: Type.Integer({ minimum: 0, description: 'Videos being processed with FFmpeg across all live nodes' }),
    total_uploading: Type.Integer({ minimum: 0, description: 'Files being uploaded to S3 across all live nodes' }),
  },
  { additionalProperties: false },
)
export type ClusterTotals = Static<typeof ClusterTotals>

/** Every error body of both processes. */
export const ErrorBody = Type.Object({ error: Type.String() }, { additionalProperties: false })
export type ErrorBody = Static<typeof ErrorBody>

/** Allowed node ids: hostnames and container names fit; nothing that could break a Redis key or a log line. */
export const NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'

/** One heartbeat as the agent sends it to the store. Age is judged on Redis's clock, never on `agentTimeMs`. */
export const NodeHeartbeat = Type.Object(
  {
    nodeId: Type.String({ pattern: NODE_ID_PATTERN }),
    /** Random per agent process: tells a restart or a duplicate agent from this one. */
    instanceId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[^|]+$' }),
    hostname: Type.String({ maxLength: 255 }),
    ip: Type.String({ maxLength: 64, pattern: '^[^|]*$' }),
    counts: JobCounts,
    /** The agent's own wall clock, stored for operators; never used to judge age. */
    agentTimeMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
)
export type NodeHeartbeat = Static<typeof NodeHeartbeat>

/** `online`: the node's last heartbeat is recent (the API's ONLINE_WITHIN_MS); `stale`: older, but not yet dropped. */
export const NodeStatus = Type.Union([Type.Literal('online'), Type.Literal('stale')], {
  description: 'online while the last heartbeat is under ONLINE_WITHIN_MS (5 s) old, then stale until STALE_AFTER_MS (30 s)',
})
export type NodeStatus = Static<typeof NodeStatus>

/** One live node as `GET /dashboard/nodes` shows it. */
export const NodeSummary = Type.Object(
  {
    id: Type.String({ description: 'The node id (TORNADO_NODE_ID)' }),
    hostname: Type.String({ description: 'The hostname the agent reported' }),
    ip: Type.String({ description: 'The IP address the agent reported' }),
    downloading: Type.Integer({ minimum: 0, description: 'Videos this node is downloading' }),
    muxing: Type.Integer({ minimum: 0, description: 'Videos this node is muxing with FFmpeg' }),
    uploading: Type.Integer({ minimum: 0, description: 'Files this node is uploading to S3' }),
    last_seen_ms_ago: Type.Integer({ minimum: 0, description: "Age of the last heartbeat in ms, on the Redis server's clock" }),
    status: NodeStatus,
  },
  { additionalProperties: false },
)
export type NodeSummary = Static<typeof NodeSummary>

/** The body of `GET /dashboard/nodes`: every node seen within STALE_AFTER_MS, sorted by id. */
export const NodeList = Type.Object({ nodes: Type.Array(NodeSummary) }, { additionalProperties: false })
export type NodeList = Static<typeof NodeList>
