import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../agent/config.js';
import { loadHubConfig } from '../../hub/config.js';
import { ConfigError } from '../../shared/config.js';

const dir = mkdtempSync(join(tmpdir(), 'bh-config-'));
const file = (name: string, content: string) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

describe('config: file, then environment over it', () => {
  it('uses defaults, then the file, then the environment', () => {
    expect(loadHubConfig(undefined, {}).heartbeatIntervalMs).toBe(10_000);
    const f = file('hub.json', JSON.stringify({ heartbeatIntervalMs: 5000, listen: '127.0.0.1:9000' }));
    const fromFile = loadHubConfig(f, {});
    expect(fromFile).toMatchObject({ heartbeatIntervalMs: 5000, listen: '127.0.0.1:9000', hubId: expect.stringMatching(/:9000$/) });
    expect(loadHubConfig(f, { BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: '2500' }).heartbeatIntervalMs).toBe(2500);
  });

  it('names the offending setting and its source', () => {
    const f = file('bad.json', JSON.stringify({ heartbeatIntervalMs: -1 }));
    expect(() => loadHubConfig(f, {})).toThrow(ConfigError);
    expect(() => loadHubConfig(f, {})).toThrow(/setting "heartbeatIntervalMs" in .*bad\.json/);
    expect(() => loadHubConfig(undefined, { BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: 'soon' })).toThrow(/environment variable BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS/);
    expect(() => loadHubConfig(undefined, { DATABASE_URL: 'not a url' })).toThrow(/DATABASE_URL/);
  });

  it('refuses unknown keys and unreadable or non-JSON files instead of ignoring them', () => {
    expect(() => loadHubConfig(file('typo.json', JSON.stringify({ hearbeatIntervalMs: 1 })), {})).toThrow(/unknown settings: hearbeatIntervalMs/);
    expect(() => loadHubConfig(file('broken.json', '{'), {})).toThrow(/is not valid JSON/);
    expect(() => loadHubConfig(join(dir, 'missing.json'), {})).toThrow(/cannot read config file/);
  });

  it('parses agent targets from JSON in the environment, and checks their shape', () => {
    const targets = [{ id: 'vm1', name: 'web', driver: 'file', disks: [{ name: 'sda', path: '/var/lib/images/web.raw' }] }];
    expect(loadAgentConfig(undefined, { BACKHAUL_AGENT_TARGETS: JSON.stringify(targets) }).targets).toEqual(targets);
    expect(() => loadAgentConfig(undefined, { BACKHAUL_AGENT_TARGETS: JSON.stringify([{ id: 'x', name: 'x', driver: 'vmware', disks: [] }]) })).toThrow(
      /BACKHAUL_AGENT_TARGETS/,
    );
  });
});
