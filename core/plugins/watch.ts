/** Reload on file change (`plugins.watch: true`): the config, every plugin and its local imports. */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";

/**
 * Call `onChange` once a burst of changes to any of `files` settles (`debounceMs`). Folders are
 * watched rather than files, so an editor that saves by writing a new file and renaming it over
 * the old one is still seen.
 */
export function watchFiles(files: readonly string[], onChange: () => void, debounceMs = 150): { close(): void } {
  const byDir = new Map<string, Set<string>>();
  for (const f of files) {
    const dir = dirname(f);
    if (!byDir.has(dir)) byDir.set(dir, new Set());
    byDir.get(dir)!.add(basename(f));
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fire = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      watchers.push(watch(dir, (_event, name) => {
        if (name === null || names.has(basename(String(name)))) fire();
      }));
    } catch {
      // A folder that vanished: nothing to watch there until the next reload.
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
