export function renderReport(results) {
  return JSON.stringify(results, null, 2)
}
