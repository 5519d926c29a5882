export { createReporter, type Reporter, type ReporterOptions, type ReporterLogger, type Stage, type StageCounts } from './reporter.js'
