// The seeds' example, rewritten for cells and executables (run: npm run aer -- run examples/hello-cell.ts).
//
//   let helloPod = pod(); helloPod.env("key", "value"); ... runtime.run(helloPod);
//
// A cell is the isolation unit (cgroup limits + namespaces); an executable is a process in it.
import { connect } from 'aurae';

const aurae = connect();
const cell = process.argv[2] ?? 'hello';

await aurae.cells.allocate({
  name: cell,
  memory: { max: 64 * 1024 * 1024 },
  pids: { max: 32 },
  cpu: { weight: 100 },
  isolation: { pid: true, mount: true, uts: true },
});
try {
  const { pid } = await aurae.cells.start(cell, {
    name: 'greeter',
    args: ['/bin/sh', '-c', 'echo "hello from $(hostname), key=$key foo=$foo"; sleep 30'],
    env: { key: 'value', foo: 'bar' },
  });
  console.log(`started ${cell}/greeter as pid ${pid}`);
  const [info] = (await aurae.cells.list()).filter((c) => c.name === cell);
  console.log(`${cell}: ${info?.executables.map((x) => `${x.name} ${x.state}`).join(', ')}`);
  const { exit } = await aurae.cells.stop(cell, 'greeter', { graceMs: 2000 });
  console.log(`stopped: ${exit?.signal ?? `code ${exit?.code}`}`);
} finally {
  await aurae.cells.free(cell, { force: true });
  aurae.close();
}
console.log(`freed ${cell}`);
