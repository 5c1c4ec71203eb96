import type { TestClient } from './client.js';

/** Poll until `check` holds (a loaded CI machine gets generous time). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 30_000, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Poll a workload (`GET /api/v1/workloads/:id`) until it is in one of `states`; resolves with it. */
export async function waitForState(client: TestClient, id: string, states: string[], timeoutMs = 30_000): Promise<any> {
  let last: any;
  await waitFor(
    async () => {
      last = (await client.get(`/api/v1/workloads/${id}`)).body;
      return states.includes(last.state);
    },
    timeoutMs,
    `workload ${id} to be ${states.join(' or ')}`,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; it is ${last?.state} (${last?.reason})`);
  });
  return last;
}
