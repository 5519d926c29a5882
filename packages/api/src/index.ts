export { buildApp, type App, type BuildAppOptions } from './app.js'
export { loadApiConfig, describeConfig, ApiEnv, type ApiConfig } from './config.js'
