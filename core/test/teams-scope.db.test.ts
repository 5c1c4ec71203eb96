// Team ownership through the SDK's helpers (ownershipColumns, ownership, scoped): the objects of a
// team are visible only to its members with the permission there, and to global holders and admins.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';

describe('team-scoped plugin data', () => {
  let core: TestCore;
  let red: string;
  let blue: string;
  let rose: TestClient; // operator in red
  let bill: TestClient; // operator in blue, viewer in red
  let vic: TestClient; // no team roles, global viewer, member of nothing but default

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['core/test/fixtures/team-notes'] });
    red = (await core.client.post('/api/v1/teams', { name: 'red' })).body.id;
    blue = (await core.client.post('/api/v1/teams', { name: 'blue' })).body.id;
    const none = (await core.client.post('/api/v1/roles', { name: 'Member', permissions: [] })).body.id;
    rose = (await core.createUser('rose', [none], { teams: [{ team: 'red', roles: ['Operator'] }] })).client;
    bill = (await core.createUser('bill', [none], { teams: [{ team: 'blue', roles: ['Operator'] }, { team: 'red', roles: ['Viewer'] }] })).client;
    vic = (await core.createUser('vic', ['viewer'], { teams: ['default'] })).client;
  });
  afterAll(() => core?.stop());

  it('stamps new rows with the default team and the creator, or the team asked for', async () => {
    const a = await rose.post('/api/plugins/team-notes/notes', { body: 'red note' });
    expect(a.status).toBe(200);
    expect(a.body.team).toBe(red);
    const b = await bill.post('/api/plugins/team-notes/notes', { body: 'blue note', team: blue });
    expect(b.body.team).toBe(blue);
  });

  it('refuses to write into a team where the caller lacks the permission', async () => {
    const res = await bill.post('/api/plugins/team-notes/notes', { body: 'sneaky', team: red });
    expect(res.status).toBe(403);
    expect(res.body.error.message).toBe(`You do not hold "notes:write" in team "${red}"`);
  });

  it("lists only the rows of the caller's teams; global holders and admins see all", async () => {
    const bodies = async (client: TestClient) => (await client.get('/api/plugins/team-notes/notes')).body.items.map((n: { body: string }) => n.body);
    expect(await bodies(rose)).toEqual(['red note']);
    expect(await bodies(bill)).toEqual(['blue note', 'red note']);
    expect(await bodies(vic)).toEqual(['blue note', 'red note']);
    expect(await bodies(core.client)).toEqual(['blue note', 'red note']);
  });

  it("answers 404 for another team's row", async () => {
    const blueNote = (await core.client.get('/api/plugins/team-notes/notes')).body.items.find((n: { body: string }) => n.body === 'blue note');
    expect((await rose.get(`/api/plugins/team-notes/notes/${blueNote.id}`)).status).toBe(404);
    expect((await bill.get(`/api/plugins/team-notes/notes/${blueNote.id}`)).status).toBe(200);
  });
});
