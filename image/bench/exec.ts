// Executable start latency (not a test), in a booted node: CellService.Start (which returns once the program
// was executed in its cell) against a raw child_process.spawn of the same program inside the same guest, plus
// the plain RPC round trip over the same path for scale. Everything runs under the same (TCG) CPU.
import type { AuraeClient } from '../../aer/sdk';
import type { DebugShell } from '../lib/debug-shell';

export interface ExecBenchResult {
  runs: number;
  startMedianMs: number;
  rpcMedianMs: number;
  rawSpawnMedianMs: number;
  /** Every Start, in order (ms): the spread behind the median. */
  startSamplesMs: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchExecStart(client: AuraeClient, shell: DebugShell, log: (l: string) => void, runs = 15): Promise<ExecBenchResult> {
  await client.cells.allocate({ name: 'bench' });
  const start: number[] = [];
  const rpc: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      await client.health.check();
      rpc.push(performance.now() - t);
      t = performance.now();
      await client.cells.start('bench', { name: `true-${i}`, args: ['/bin/true'] });
      start.push(performance.now() - t);
    }
  } finally {
    await client.cells.free('bench', { force: true });
  }
  // The baseline: the same program spawned by Node in the guest, timed to its 'spawn' event (program executed).
  const script = `const {spawn}=require('child_process');const out=[];let i=0;const next=()=>{if(i++>=${runs}){console.log(JSON.stringify(out));return;}const t=performance.now();const c=spawn('/bin/true');c.once('spawn',()=>{out.push(performance.now()-t);c.once('exit',next);});};next();`;
  const raw = JSON.parse((await shell.ok(`/usr/bin/node -e "${script.replace(/"/g, '\\"')}"`, 60_000)).trim().split('\n').pop()!) as number[];
  const result = { runs, startMedianMs: median(start), rpcMedianMs: median(rpc), rawSpawnMedianMs: median(raw), startSamplesMs: start };
  log(`exec: Start ${result.startMedianMs.toFixed(1)} ms, Health RPC ${result.rpcMedianMs.toFixed(1)} ms, raw spawn ${result.rawSpawnMedianMs.toFixed(1)} ms (medians of ${runs})`);
  return result;
}
