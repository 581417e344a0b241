// `import { RingClient } from 'ringkv'` works from inside the repo (package self-reference
// through package.json "exports"), as the README shows; it loads the compiled client.
import { describe, expect, it } from 'vitest';

describe("the package entry 'ringkv'", () => {
  it('exports RingClient and the typed errors', async () => {
    const mod = (await import('ringkv')) as Record<string, unknown>;
    expect(typeof mod.RingClient).toBe('function');
    expect(typeof (mod.RingClient as { connect?: unknown }).connect).toBe('function');
    for (const name of ['InvalidKey', 'KeyTooLong', 'ValueTooLarge', 'Timeout', 'Unavailable']) expect(typeof mod[name], name).toBe('function');
  });
});
