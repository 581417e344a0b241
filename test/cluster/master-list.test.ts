// Nodes and tools given a list of masters (`--master a,b,c`) find the one that leads: a
// real master (level store), an in-process standby that refuses everything with NOT_LEADER
// naming it, and an address nobody listens on. The node registers and serves; `ringkv
// status` reads the leader's view and shows every master's role; `ringkv cluster remove`
// reaches the leader through the standby; a malformed list is a usage error.
import { deadAddr } from '../helpers/connect.js';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMaster, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { RpcServer } from '../../server/protocol/rpc/index.js';
import { NotLeaderError, type MasterRole } from '../../server/master/leadership.js';
import { settled, until, view } from '../helpers/cluster.js';
import { McClient } from '../helpers/mc.js';
import { expectOneLineFailure, runCli } from '../helpers/cli.js';

const HOST = '127.0.0.1';
const renewMs = 200;

describe('a node and the tools given a list of masters', () => {
  let master: RunningServer;
  let node: RunningServer | undefined;
  let leaderAddr: string;
  let standby: RpcServer;
  let standbyAddr: string;
  let dead: string;
  const refused: string[] = [];
  const cliProcs = new Set<ChildProcess>();

  beforeAll(async () => {
    master = await startMaster({ args: ['--lease-ms', '1500', '--vnodes', '16', '--n', '1', '--r', '1', '--w', '1'] });
    leaderAddr = `${HOST}:${master.port}`;
    standby = new RpcServer({ host: HOST, port: 0 });
    for (const type of ['register', 'renew', 'changes', 'progress', 'view', 'leave']) {
      standby.handle(type, () => {
        refused.push(type);
        throw new NotLeaderError(leaderAddr);
      });
    }
    standby.handle('role', (): MasterRole => ({ role: 'standby', self: standbyAddr, leader: leaderAddr, store: 'etcd', terms: 0 }));
    standbyAddr = `${HOST}:${await standby.listen()}`;
    dead = await deadAddr();
  }, 60_000);

  afterAll(async () => {
    for (const p of cliProcs) p.kill('SIGKILL');
    await node?.stop();
    await standby?.close(0);
    await master?.stop();
  });

  it('the node registers with the leader through a dead address and a standby naming it, and serves', async () => {
    // The leader is not in the list: only the standby's hint names it.
    node = await startRingkv({ args: ['--master', `${dead},${standbyAddr}`, '--id', 'n1', '--rpc-port', '0', '--renew-ms', String(renewMs), '--drift-ms', '100'] });
    await until(master, settled(['n1']), 20_000);
    expect(refused).toContain('register');
    const c = await McClient.connect(node.port);
    try {
      expect(await c.set('k', 'v')).toBe('STORED');
      expect((await c.get('k'))?.value.toString()).toBe('v');
    } finally {
      c.close();
    }
    // It keeps renewing with the leader (the standby is not asked again).
    const before = refused.length;
    await new Promise((r) => setTimeout(r, 5 * renewMs));
    expect(refused.length).toBe(before);
    expect((await view(master)).members.find((m) => m.id === 'n1')?.status).toBe('up');
  }, 40_000);

  it('ringkv status --master dead,standby,leader: the leader\'s view, and every master\'s role', async () => {
    const run = await runCli(['status', '--master', `${dead},${standbyAddr},${leaderAddr}`], 20_000, cliProcs);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^master ${leaderAddr.replace(/\./g, '\\.')} lsn=\\d+ `));
    expect(lines[1]).toBe(`masters: ${dead} unreachable, ${standbyAddr} standby, ${leaderAddr} leader`);
    expect(lines).toContain('health: healthy');

    const json = await runCli(['status', '--master', `${standbyAddr},${dead}`, '--json'], 20_000, cliProcs);
    expect(json.code, json.stderr).toBe(0);
    const s = JSON.parse(json.stdout) as { masters: Array<{ addr: string; role: string; leader?: string }>; health: { healthy: boolean; problems: string[] }; members: unknown[] };
    // The leader, found through the standby's hint, is shown after the listed masters.
    expect(s.masters).toEqual([
      expect.objectContaining({ addr: standbyAddr, role: 'standby', leader: leaderAddr }),
      expect.objectContaining({ addr: dead, role: 'unreachable' }),
      expect.objectContaining({ addr: leaderAddr, role: 'leader' }),
    ]);
    expect(s.members).toHaveLength(1);
    expect(s.health).toEqual({ healthy: true, problems: [] });
  }, 45_000);

  it('ringkv cluster remove reaches the leader through the standby (its refusal passes through)', async () => {
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n9', '--master', `${standbyAddr}`], 20_000, cliProcs), new RegExp(`master at ${leaderAddr.replace(/\./g, '\\.')} has no member n9 \\(UNKNOWN_NODE\\)`));
  }, 25_000);

  it('a malformed --master list is a usage error, for the node and for the tools', async () => {
    expectOneLineFailure(await runCli(['node', '--master', `${leaderAddr},nowhere`], 20_000, cliProcs), /--master/);
    expectOneLineFailure(await runCli(['status', '--master', `${leaderAddr},nowhere`], 20_000, cliProcs), /--master/);
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n1', '--master', `${leaderAddr},:7000`], 20_000, cliProcs), /--master/);
  }, 65_000);
});
