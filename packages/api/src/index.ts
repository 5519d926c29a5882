export { buildApp, type App, type BuildAppOptions } from './app.js'
export { loadApiConfig, describeConfig, ApiEnv, type ApiConfig } from './config.js'
export { default as authPlugin, isAcceptedKey } from './plugins/auth.js'
export { default as errorsPlugin } from './plugins/errors.js'
