// The Tornado dashboard: one EventSource on /dashboard/cluster/stream (authenticated by the session cookie that
// POST /dashboard/session sets), open only while the tab is visible. No framework, nothing loaded from elsewhere.
'use strict'

const KEY_STORAGE = 'tornado.apiKey'
/** No update for this long: the page says its figures are stale. */
const STALE_MS = 3000
/** Wait before trying again when the API cannot be reached. */
const RETRY_MS = 2000
const CHART_WINDOW_MS = 5 * 60_000
const STAGES = ['downloading', 'muxing', 'uploading']

const $ = (id) => document.getElementById(id)
const el = {
  login: $('login'),
  keyInput: $('api-key'),
  loginError: $('login-error'),
  dashboard: $('dashboard'),
  logout: $('logout'),
  connection: $('connection'),
  problem: $('problem'),
  updated: $('updated'),
  online: $('nodes-online'),
  stale: $('nodes-stale'),
  tbody: document.querySelector('#nodes tbody'),
  noNodes: $('no-nodes'),
  chartMax: $('chart-max'),
  chartMid: $('chart-mid'),
}
const totalEls = Object.fromEntries(STAGES.map((stage) => [stage, $(`total-${stage}`)]))
const lineEls = Object.fromEntries(STAGES.map((stage) => [stage, $(`line-${stage}`)]))
const numberFormat = new Intl.NumberFormat()

/** The key while logged in, null otherwise. */
let apiKey = null
/** The one open stream, if any. */
let stream = null
/** The one pending reconnect, if any: a retry while the API is away, or the renewal of the session before it ends. */
let reconnectTimer = null
/** The one staleness timer, if any. */
let staleTimer = null
/** Bumped whenever the page stops or restarts its connection: late answers of an older attempt are ignored. */
let attempt = 0
let lastUpdateAt = 0
/** Totals received in the last CHART_WINDOW_MS: {at, downloading, muxing, uploading}. */
const history = []
/** Table rows by node id, reused from one update to the next. */
const rows = new Map()

const setText = (node, text) => {
  if (node.textContent !== text) node.textContent = text
}

// ---- connection ------------------------------------------------------------------------------------------------

function start(key) {
  apiKey = key
  el.login.hidden = true
  el.dashboard.hidden = false
  el.logout.hidden = false
  connect()
}

/** (Re)connects: a fresh session cookie, then the stream. Stops after a 401; retries while the API is away. */
async function connect() {
  const mine = disconnect()
  if (apiKey === null) return
  if (document.hidden) {
    clearTimeout(staleTimer)
    staleTimer = null
    setText(el.connection, 'Paused while the tab is hidden')
    return
  }
  // Data already shown turns stale if no update follows, however the attempt goes.
  if (staleTimer === null && lastUpdateAt > 0) staleTimer = setTimeout(markStale, STALE_MS)
  setText(el.connection, 'Connecting…')
  let status
  let expiresInMs = 0
  try {
    const response = await fetch('/dashboard/session', { method: 'POST', headers: { 'x-api-key': apiKey }, cache: 'no-store' })
    status = response.status
    if (status === 200) expiresInMs = (await response.json()).expires_in_ms
  } catch {
    status = 0
  }
  if (mine !== attempt) return // logged out, hidden or restarted meanwhile
  if (status === 200) {
    // The server ends a stream when its session does: move to a new one a minute before.
    reconnectTimer = setTimeout(connect, Math.max(expiresInMs - 60_000, 10_000))
    return openStream(mine)
  }
  if (status === 401) return rejectKey()
  showProblem(status === 0 ? 'The API cannot be reached. Retrying…' : `The API answered ${status}. Retrying…`)
  setText(el.connection, 'Offline')
  reconnectTimer = setTimeout(connect, RETRY_MS)
}

function openStream(mine) {
  const source = new EventSource('/dashboard/cluster/stream?nodes=1')
  stream = source
  let opened = false
  source.addEventListener('open', () => {
    opened = true
    setText(el.connection, 'Live')
  })
  source.addEventListener('cluster', (event) => onCluster(JSON.parse(event.data)))
  source.addEventListener('nodes', (event) => onNodes(JSON.parse(event.data)))
  source.addEventListener('error', (event) => {
    if (mine !== attempt) return
    if (typeof event.data === 'string') {
      if (JSON.parse(event.data).error !== 'Redis unavailable') {
        // The server ended the stream for good (its key was revoked): start over, which shows why.
        disconnect()
        return connect()
      }
      // The server's own error event: the API is up, Redis is not. The stream stays open.
      showProblem('Redis is unavailable. The API keeps retrying; the figures below are the last ones received.')
      setText(el.connection, 'Connected, Redis unavailable')
      document.body.classList.add('is-stale')
      return
    }
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a 401 once the session has expired, a proxy's 502): find out why and start over, at
      // once if this stream worked before, else after a pause (a browser that refuses the cookie must not spin).
      disconnect()
      if (opened) return connect()
      showProblem('The API refused the live stream. Retrying…')
      reconnectTimer = setTimeout(connect, RETRY_MS)
    } else {
      showProblem('Lost the connection to the API. Reconnecting…')
      setText(el.connection, 'Reconnecting…')
    }
  })
}

/** Closes the stream and cancels a pending reconnect; returns the new attempt number. */
function disconnect() {
  attempt++
  if (stream) stream.close()
  stream = null
  clearTimeout(reconnectTimer)
  reconnectTimer = null
  return attempt
}

function rejectKey() {
  stop()
  el.loginError.textContent = 'Wrong API key: the API rejected it. Check the key and try again.'
}

/** Back to the login form: nothing keeps running, nothing of the key is kept. */
function stop() {
  disconnect()
  clearTimeout(staleTimer)
  staleTimer = null
  lastUpdateAt = 0
  apiKey = null
  sessionStorage.removeItem(KEY_STORAGE)
  history.length = 0
  for (const row of rows.values()) row.tr.remove()
  rows.clear()
  for (const stage of STAGES) totalEls[stage].textContent = '–'
  drawChart()
  el.dashboard.hidden = true
  el.logout.hidden = true
  el.login.hidden = false
  el.problem.hidden = true
  setText(el.connection, '')
  setText(el.updated, '')
  document.body.classList.remove('is-stale')
  el.keyInput.focus()
}

// ---- what the stream brings ---------------------------------------------------------------------------------

function onCluster(totals) {
  el.problem.hidden = true
  setText(el.connection, 'Live')
  lastUpdateAt = Date.now()
  document.body.classList.remove('is-stale')
  setText(el.updated, `Updated ${new Date(lastUpdateAt).toLocaleTimeString()}`)
  clearTimeout(staleTimer)
  staleTimer = setTimeout(markStale, STALE_MS)

  for (const stage of STAGES) setText(totalEls[stage], numberFormat.format(totals[`total_${stage}`]))
  history.push({
    at: lastUpdateAt,
    downloading: totals.total_downloading,
    muxing: totals.total_muxing,
    uploading: totals.total_uploading,
  })
  while (history.length > 0 && history[0].at < lastUpdateAt - CHART_WINDOW_MS) history.shift()
  drawChart()
}

/** Re-arms itself each second while nothing arrives, to keep the age it shows current. */
function markStale() {
  document.body.classList.add('is-stale')
  const seconds = Math.round((Date.now() - lastUpdateAt) / 1000)
  setText(el.updated, `No update for ${seconds} s: the figures may be out of date`)
  staleTimer = setTimeout(markStale, 1000)
}

function onNodes({ nodes }) {
  const seen = new Set()
  let online = 0
  nodes.forEach((node, index) => {
    seen.add(node.id)
    if (node.status === 'online') online++
    let row = rows.get(node.id)
    if (!row) {
      row = makeRow(node.id)
      rows.set(node.id, row)
    }
    setText(row.hostname, node.hostname)
    setText(row.ip, node.ip)
    for (const stage of STAGES) setText(row[stage], numberFormat.format(node[stage]))
    setText(row.lastSeen, `${(node.last_seen_ms_ago / 1000).toFixed(1)} s ago`)
    setText(row.status, node.status)
    row.tr.className = node.status
    // The API sorts by id: move a row only when it is out of place.
    if (el.tbody.children[index] !== row.tr) el.tbody.insertBefore(row.tr, el.tbody.children[index] ?? null)
  })
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove()
      rows.delete(id)
    }
  }
  setText(el.online, String(online))
  setText(el.stale, String(nodes.length - online))
  el.noNodes.hidden = nodes.length > 0
}

function makeRow(id) {
  const tr = document.createElement('tr')
  tr.dataset.nodeId = id
  const idCell = document.createElement('th')
  idCell.scope = 'row'
  idCell.textContent = id
  tr.append(idCell)
  const row = { tr }
  for (const field of ['hostname', 'ip', ...STAGES, 'lastSeen', 'status']) {
    const td = document.createElement('td')
    td.dataset.field = field
    if (STAGES.includes(field) || field === 'lastSeen') td.className = 'num'
    tr.append(td)
    row[field] = td
  }
  return row
}

function showProblem(text) {
  setText(el.problem, text)
  el.problem.hidden = false
}

// ---- chart ---------------------------------------------------------------------------------------------------

const CHART = { width: 600, top: 10, bottom: 139 }

/** The least of 1, 2, 5 times a power of ten that is at least value. */
function niceCeiling(value) {
  if (value <= 1) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value)
}

function drawChart() {
  const now = Date.now()
  let max = 0
  for (const point of history) max = Math.max(max, point.downloading, point.muxing, point.uploading)
  max = niceCeiling(max)
  setText(el.chartMax, numberFormat.format(max))
  setText(el.chartMid, max % 2 === 0 ? numberFormat.format(max / 2) : '')
  for (const stage of STAGES) {
    let path = ''
    let previousAt = 0
    for (const point of history) {
      const x = ((point.at - (now - CHART_WINDOW_MS)) / CHART_WINDOW_MS) * CHART.width
      const y = CHART.bottom - (point[stage] / max) * (CHART.bottom - CHART.top)
      // A gap (the tab was hidden, the API away) stays a gap.
      path += `${point.at - previousAt > 3 * STALE_MS ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`
      previousAt = point.at
    }
    lineEls[stage].setAttribute('d', path)
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------------

el.login.addEventListener('submit', (event) => {
  event.preventDefault()
  const key = el.keyInput.value.trim()
  if (key === '') return
  el.keyInput.value = ''
  el.loginError.textContent = ''
  sessionStorage.setItem(KEY_STORAGE, key)
  start(key)
})

el.logout.addEventListener('click', () => {
  stop()
  // The cookie is HttpOnly: only the API can clear it.
  fetch('/dashboard/session', { method: 'DELETE' }).catch(() => {})
})

document.addEventListener('visibilitychange', () => {
  if (apiKey !== null) connect()
})

const saved = sessionStorage.getItem(KEY_STORAGE)
if (saved) {
  start(saved)
} else {
  el.login.hidden = false
  el.keyInput.focus()
}
