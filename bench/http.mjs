export async function measureHttp() {
  throw new Error('not yet')
}
