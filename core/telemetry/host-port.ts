// Host and port from a Host value or a URL, without a URL object (the SERVER span's attributes).

export function authorityOf(url: string): string {
  const start = url.indexOf("://");
  if (start < 0) return "";
  const end = url.indexOf("/", start + 3);
  return end < 0 ? url.slice(start + 3) : url.slice(start + 3, end);
}

/** The port of a Host value (`h:8080`, `[::1]:8080`), else the scheme's default; -1 when not a port. */
export function portOf(host: string, defaultPort: number): number {
  const from = host.charCodeAt(0) === 91 /* [ */ ? host.indexOf("]") : 0;
  const colon = host.indexOf(":", from < 0 ? 0 : from);
  if (colon < 0 || colon === host.length - 1) return defaultPort;
  let n = 0;
  for (let i = colon + 1; i < host.length; i++) {
    const d = host.charCodeAt(i) - 48;
    if (d < 0 || d > 9 || (n = n * 10 + d) > 65535) return -1;
  }
  return n;
}

export function stripPort(host: string): string {
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf("]");
    return close > 0 ? host.slice(1, close) : host;
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}
