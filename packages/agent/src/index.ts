export { startAgent, createLogger, SHUTDOWN_DEADLINE_MS, type Agent, type AgentDeps } from './agent.js'
export { loadConfig, nodeIdFromHostname, AgentEnv, MIN_TOKEN_LENGTH, MAX_TOKEN_LENGTH, type AgentConfig } from './config.js'
export { HeartbeatLoop, DUPLICATE_WARN_EVERY_MS, describeError, type BeatWriter, type BeatObserver, type HeartbeatLoopOptions } from './heartbeat-loop.js'
export { AgentMetrics, BEAT_BUCKETS_SECONDS, type AgentMetricsOptions } from './agent-metrics.js'
export { requireToken, isLoopback, MISSING_TOKEN, NOT_BEARER, REPEATED_HEADER, WRONG_TOKEN } from './token-auth.js'
export { HostInfoSource, pickAddress, isUsableAddress, quickHostInfo, readHostInfo, type HostInfo, type InterfaceEntry, type AddressSources } from './host-info.js'
export { buildLocalServer, describeRequestError, BODY_LIMIT_BYTES, type LocalServerOptions } from './local-server.js'
export { NodeCounts, type NodeCountsOptions } from './node-counts.js'
export {
  WorkerRegistry, isWorkerId, WORKER_ID_PATTERN, MAX_WORKERS, DEFAULT_WORKER, DEFAULT_TTL_MS, MIN_TTL_MS, MAX_TTL_MS,
  type WorkerEntry, type ReportOutcome,
} from './workers/worker-registry.js'
export {
  ProcessRules, DEFAULT_PROCESS_RULES, ProcessMatcher, loadProcessRules, describeRulesProblem, COMM_MAX_LENGTH,
} from './processes/process-rules.js'
export { ProcessTable, READS_PER_BATCH, RECHECK_EVERY, type ProcessTableOptions } from './processes/process-table.js'
export { ProcessWatcher, type ProcessWatcherOptions } from './processes/process-watcher.js'
export { Simulator, STAGE_SECONDS, STAGE_SLOTS, MAX_JOBS_ON_NODE, type SimulatorOptions, type SimulatorTimers } from './simulator.js'
