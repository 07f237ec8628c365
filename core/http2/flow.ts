/**
 * The frames that move flow-control windows and settings (RFC 9113 §6.5, §6.9): a client's
 * SETTINGS (acknowledged; SETTINGS_INITIAL_WINDOW_SIZE moves every stream's window by the
 * difference, §6.9.2) and WINDOW_UPDATE, for the connection or one stream.
 */
import type { Buffer } from "node:buffer";
import * as F from "./frames.ts";
import type { H2Stream } from "./stream.ts";

/** What these frames need of their connection (H2Connection, conn.ts). */
export interface FlowConn {
  readonly streams: Map<number, H2Stream>;
  readonly out: F.FrameOut;
  peerWindow: number;
  maxFrame: number;
  sendWindow: number;
  lastStream: number;
  error(code: number, reason: string): void;
  streamError(id: number, code: number): void;
  wrote(): void;
  windowOpened(): void;
}

export function settingsFrame(c: FlowConn, flags: number, id: number, b: Buffer, p: number, end: number): void {
  if (id !== 0) return c.error(F.PROTOCOL_ERROR, "SETTINGS on a stream");
  if ((flags & F.ACK) !== 0) {
    if (end !== p) c.error(F.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
    return;
  }
  if ((end - p) % 6 !== 0) return c.error(F.FRAME_SIZE_ERROR, "SETTINGS of the wrong size");
  for (let i = p; i < end; i += 6) {
    const key = b.readUInt16BE(i);
    const v = b.readUInt32BE(i + 2);
    if (key === F.S_ENABLE_PUSH || key === F.S_ENABLE_CONNECT_PROTOCOL) {
      if (v > 1) return c.error(F.PROTOCOL_ERROR, "a boolean setting other than 0 or 1");
    } else if (key === F.S_INITIAL_WINDOW_SIZE) {
      if (v > F.MAX_WINDOW) return c.error(F.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1");
      const delta = v - c.peerWindow;
      c.peerWindow = v;
      for (const s of c.streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > F.MAX_WINDOW) return c.error(F.FLOW_CONTROL_ERROR, "a stream window over 2^31-1");
      }
    } else if (key === F.S_MAX_FRAME_SIZE) {
      if (v < 16384 || v > 0xffffff) return c.error(F.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range");
      c.maxFrame = v;
    }
    // HEADER_TABLE_SIZE: answers use no dynamic table; the others do not bind a server.
  }
  c.out.head(0, F.SETTINGS, F.ACK, 0);
  c.wrote();
  c.windowOpened();
}

export function windowUpdate(c: FlowConn, id: number, b: Buffer, p: number, end: number): void {
  if (end - p !== 4) return c.error(F.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size");
  const inc = b.readUInt32BE(p) & F.MAX_WINDOW;
  if (id === 0) {
    if (inc === 0) return c.error(F.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    c.sendWindow += inc;
    if (c.sendWindow > F.MAX_WINDOW) return c.error(F.FLOW_CONTROL_ERROR, "the connection's window over 2^31-1");
    return c.windowOpened();
  }
  const s = c.streams.get(id);
  if (s === undefined) {
    if (id > c.lastStream) c.error(F.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
    return;
  }
  if (inc === 0) return c.streamError(id, F.PROTOCOL_ERROR);
  s.sendWindow += inc;
  if (s.sendWindow > F.MAX_WINDOW) return c.streamError(id, F.FLOW_CONTROL_ERROR);
  if (s.waiting && c.sendWindow > 0) s.flush();
}
