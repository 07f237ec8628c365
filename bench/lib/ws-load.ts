// WebSocket load for bench/ws.ts, in a process of its own: `bun bench/lib/ws-load.ts URL CONNECTIONS SECONDS SIZE`.
// Each connection sends a SIZE-byte binary message, waits for its echo, sends the next, for
// SECONDS; prints one JSON line: messages echoed per second, the p50/p99 round trip, errors.
// With `idle` as SECONDS it only opens the connections and holds them until stdin closes.
export {};
const [url, connArg, secArg, sizeArg] = process.argv.slice(2);
const conns = Number(connArg ?? 200);
const idle = secArg === "idle";
const seconds = idle ? 0 : Number(secArg ?? 10);
const payload = new Uint8Array(Number(sizeArg ?? 1024)).fill(120);
let errors = 0;
const sockets: WebSocket[] = [];
await Promise.all(
  Array.from({ length: conns }, () =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(url!);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => resolve();
      ws.onerror = () => {
        errors++;
        resolve();
      };
      sockets.push(ws);
    })),
);
const live = sockets.filter((s) => s.readyState === WebSocket.OPEN);
if (idle) {
  console.log(JSON.stringify({ open: live.length, errors }));
  for await (const _ of Bun.stdin.stream()) { /* until stdin closes */ }
  process.exit(0);
}
const rtts: number[] = [];
let messages = 0;
let running = true;
const t0 = performance.now();
for (const ws of live) {
  let sent = 0;
  ws.onmessage = () => {
    messages++;
    if (messages % 16 === 0) rtts.push(performance.now() - sent);
    if (!running) return;
    sent = performance.now();
    ws.send(payload);
  };
  ws.onclose = () => errors++;
  sent = performance.now();
  ws.send(payload);
}
await new Promise((r) => setTimeout(r, seconds * 1000));
running = false;
const elapsed = (performance.now() - t0) / 1000;
rtts.sort((a, b) => a - b);
const pct = (p: number) => Math.round((rtts[Math.floor(rtts.length * p)] ?? NaN) * 100) / 100;
console.log(
  JSON.stringify({ open: live.length, messagesPerSec: Math.round(messages / elapsed), p50Ms: pct(0.5), p99Ms: pct(0.99), errors }),
);
for (const ws of live) ws.close();
process.exit(0);
