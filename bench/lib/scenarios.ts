// Scenarios are data. `variants: true` marks the one scenario the optional Fulcrum variants
// (tracing, access log off, plugin strategy, workers) are compared on, to keep runs bounded.
import { POST_PATH, POST_SIZE } from "./backends.ts";

export interface Scenario {
  id: string;
  path: string;
  method?: "GET" | "POST";
  bodySize?: number;
  connections: number;
  byBytes?: boolean; // compare in bytes/s rather than req/s
  variants?: boolean;
}

export const SCENARIOS: Scenario[] = [
  { id: "get-100b-c64", path: "/100b", connections: 64, variants: true },
  { id: "get-100b-c256", path: "/100b", connections: 256 },
  { id: "get-16k-c64", path: "/16k", connections: 64 },
  { id: "get-1m-c64", path: "/1m", connections: 64, byBytes: true },
  { id: "post-4k-c64", path: POST_PATH, method: "POST", bodySize: POST_SIZE, connections: 64 },
];
