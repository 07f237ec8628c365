// A WebSocket echo backend for bench/ws.ts, in a process of its own: Bun.serve's native WebSocket,
// every message sent back as it came. `bun bench/lib/ws-echo.ts PORT`
const port = Number(process.argv[2] ?? 19031);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  idleTimeout: 0,
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("ws echo\n");
  },
  websocket: {
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    message(ws, message) {
      ws.send(message);
    },
  },
});
console.log(`ws echo on ${port}`);
