// prom-client's files, imported one by one: its index also loads the Pushgateway (node:http,
// node:https), Summary and Histogram, ~5 MB of RSS that Fulcrum never uses (core/telemetry/metrics.ts).
declare module "prom-client/lib/registry.js" {
  import { Registry } from "prom-client";
  export default Registry;
}
declare module "prom-client/lib/counter.js" {
  import { Counter } from "prom-client";
  export default Counter;
}
declare module "prom-client/lib/gauge.js" {
  import { Gauge } from "prom-client";
  export default Gauge;
}
declare module "prom-client/lib/defaultMetrics.js" {
  import { collectDefaultMetrics } from "prom-client";
  export default collectDefaultMetrics;
}
declare module "prom-client/lib/cluster.js" {
  import { AggregatorRegistry } from "prom-client";
  export default AggregatorRegistry;
}
