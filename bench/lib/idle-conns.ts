// Opens N idle TCP connections to 127.0.0.1:PORT (no request sent) and holds them, so the
// harness can read the proxy's RSS with that many clients parked. Opens in batches so the
// listen backlog never overflows (an overflow turns into 1 s SYN retries, not failures).
// Prints one JSON line when opened and another 2 s later with how many are still open;
// exits on SIGTERM or after --hold seconds, whichever is first.
const args = process.argv.slice(2);
const arg = (k: string, d: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1]! : d;
};
const port = Number(arg("--port", "18080"));
const count = Number(arg("--count", "10000"));
const holdSec = Number(arg("--hold", "30"));
const batch = 500;
export {}; // a module, for top-level await

let opened = 0, failed = 0, closedByPeer = 0;
const sockets: { end(): void }[] = [];

function connectOne(): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      failed++;
      resolve();
    }, 5000);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          clearTimeout(t);
          opened++;
          sockets.push(s);
          resolve();
        },
        close() {
          closedByPeer++;
        },
        connectError() {
          clearTimeout(t);
          failed++;
          resolve();
        },
        data() {},
      },
    }).catch(() => {
      clearTimeout(t);
      failed++;
      resolve();
    });
  });
}

const t0 = performance.now();
for (let i = 0; i < count; i += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, count - i) }, connectOne));
}
process.stdout.write(JSON.stringify({ phase: "opened", open: opened, failed, ms: Math.round(performance.now() - t0) }) + "\n");
setTimeout(() => process.stdout.write(JSON.stringify({ phase: "held", stillOpen: opened - closedByPeer }) + "\n"), 2000);
const bye = () => {
  for (const s of sockets) s.end();
  process.exit(0);
};
setTimeout(bye, holdSec * 1000);
process.on("SIGTERM", bye);
process.on("SIGINT", bye);
