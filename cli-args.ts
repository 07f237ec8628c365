/**
 * The command line for main.ts: its parsing (a bad command line is one line and the usage, exit
 * 2). Apart from cli.ts (`fulcrum check`) so that serving loads none of what checking needs.
 */
import { parseArgs } from "node:util";
import pkg from "./package.json" with { type: "json" };
import { didYouMean } from "./core/config/units.ts";

export const USAGE = `Fulcrum ${pkg.version}: HTTP load balancer and reverse proxy

Usage:
  fulcrum [run] [--config FILE]   serve with FILE (default: fulcrum.yaml)
  fulcrum check [--config FILE]   validate FILE, print a summary; exit 2 if invalid
  fulcrum demo                    start three example backends and Fulcrum (config/demo.yaml)
  fulcrum healthcheck [--url URL] exit 0 if the admin /health answers 200 (for Docker HEALTHCHECK)
  fulcrum reload --pid PID        make a running Fulcrum reload its config and plugins (sends SIGHUP)
  fulcrum reload --pid-file FILE  the same, with the PID from FILE (written by run --pid-file FILE)
  fulcrum types                   print the plugin API as a .d.ts: fulcrum types > fulcrum.d.ts
  fulcrum version, -v, --version  print the version
  fulcrum help, -h, --help        this text

Exit codes: 0 ok, 2 bad config or command line, 1 anything else.
From source, run the same commands as: bun main.ts <subcommand>
`;

const COMMANDS = ["run", "check", "demo", "healthcheck", "reload", "types", "version", "help"];

const OPTIONS = {
  config: { type: "string", short: "c" },
  url: { type: "string" },
  pid: { type: "string" },
  "pid-file": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as const;

export type Options = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>["values"];

/** The subcommand and its options, or what is wrong with the command line (one line). */
export function parseCommandLine(args: string[]): { command: string; values: Options } | { error: string } {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true });
  } catch (e) {
    return { error: argumentError(e) };
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: "help", values };
  if (values.version) return { command: "version", values };
  const command = positionals[0] ?? "run";
  if (!COMMANDS.includes(command)) {
    const hint = didYouMean(command, COMMANDS);
    return { error: `unknown command "${command}"${hint ? `; did you mean "${hint}"?` : ""}` };
  }
  if (positionals.length > 1) return { error: `unexpected argument "${positionals[1]}" after ${command}` };
  return { command, values };
}

/** node:util's parse errors, in one short line (its own messages are long and name its API). */
function argumentError(e: unknown): string {
  const message = String((e as Error)?.message ?? e);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  const long = /--[\w-]+/.exec(quoted)?.[0] ?? quoted;
  switch ((e as { code?: string }).code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      const option = quoted.startsWith("-") ? quoted : `-${quoted}`;
      const hint = didYouMean(option.replace(/^-+/, ""), Object.keys(OPTIONS));
      return `unknown option ${option}${hint ? `; did you mean --${hint}?` : ""}`;
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return / missing/.test(message) ? `${long} needs a value` : `${long} takes no value`;
    default:
      return message.split("\n")[0]!;
  }
}
