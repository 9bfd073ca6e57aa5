// The seeds' example as written, in TypeScript (run: npm run aer -- run examples/hello-pod.ts [IMAGE]):
//
//   let helloContainer = container(); helloContainer.image("busybox");
//   let helloPod = pod(); helloPod.env("key", "value"); helloPod.env("foo", "bar");
//   helloPod.expose(80); helloPod.expose(8080); helloPod.add(helloContainer);
//   let auae = connect(); let runtime = auae.runtime(); runtime.run(helloPod);
//
// IMAGE defaults to busybox (Docker Hub); a node without internet access pulls from a local registry instead,
// e.g. 10.0.2.100:5000/busybox (see the README, "Images and pods"). `expose(80)` publishes the pod's port 80 on the
// node's port 80 (README, "Pod networking"). The container's command line is ours (the seeds leave busybox's `sh`,
// which exits at once without a terminal): it greets and stays up a little so that it can be seen running.
import { connect, container, pod } from 'aurae';

const image = process.argv[2] ?? 'busybox';

const helloContainer = container();
helloContainer.image(image);
helloContainer.args('sh', '-c', 'echo "hello from $(hostname): key=$key foo=$foo"; sleep 30');

const helloPod = pod();
helloPod.env('key', 'value');
helloPod.env('foo', 'bar');
helloPod.expose(80);
helloPod.expose(8080);

helloPod.add(helloContainer);

const auae = connect();
const runtime = auae.runtime();
const status = await runtime.run(helloPod, { onProgress: (p) => p.state === 'done' && console.error(`pulled layer ${p.layer.slice(7, 19)} of ${p.image}`) });
console.log(`pod ${status.name}: ${status.state}; ${status.containers.map((c) => `${c.name} ${c.state}${c.pid ? ` (pid ${c.pid})` : ''}`).join(', ')}`);

try {
  // A pod is a cell and each container an executable of it: its output is that executable's log.
  const stop = new AbortController();
  const giveUp = setTimeout(() => stop.abort(), 10_000);
  for await (const entry of auae.observe.logs(status.name, status.containers[0]!.name, { follow: true, signal: stop.signal })) {
    console.log(`${status.containers[0]!.name}: ${entry.line}`);
    break;
  }
  clearTimeout(giveUp);
  const stopped = await auae.pods.stop(status.name, { graceMs: 2000 });
  console.log(`stopped: ${stopped.state}`);
} finally {
  await auae.pods.remove(status.name, { force: true });
  auae.close();
}
console.log(`removed ${status.name}`);
