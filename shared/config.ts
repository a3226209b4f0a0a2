import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** One documented setting: its key in the JSON config file, its environment variable and its schema. */
export interface Setting<T extends z.ZodType = z.ZodType> {
  env: string;
  schema: T;
  doc: string;
}

export type Settings = Record<string, Setting>;
export type ConfigOf<S extends Settings> = { [K in keyof S]: z.output<S[K]['schema']> };

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

/**
 * Reads settings from an optional JSON file, then lets environment variables override it.
 * Precedence: environment > file > default. Unknown keys in the file are an error, so a typo
 * is never silently ignored.
 */
export function loadConfig<S extends Settings>(settings: S, file: string | undefined, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
    const unknown = Object.keys(fromFile).filter((k) => !(k in settings));
    if (unknown.length > 0) {
      throw new ConfigError(`config file ${file} has unknown settings: ${unknown.join(', ')}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(settings)) {
    const raw = env[setting.env] !== undefined && env[setting.env] !== '' ? parseEnv(env[setting.env]!) : fromFile[key];
    const parsed = setting.schema.safeParse(raw);
    if (!parsed.success) {
      const source = env[setting.env] ? `environment variable ${setting.env}` : file ? `setting "${key}" in ${file}` : `setting "${key}"`;
      throw new ConfigError(`${source}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
    }
    out[key] = parsed.data;
  }
  return out as ConfigOf<S>;
}

/** Environment values are strings; JSON-looking ones (lists, objects) are parsed as JSON. */
function parseEnv(value: string): unknown {
  const trimmed = value.trim();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return value;
    }
  }
  return value;
}

/** A plain-text table of the settings, for `--help` style documentation. */
export function describeSettings(settings: Settings): string {
  const rows = Object.entries(settings).map(([key, s]) => {
    const def = s.schema.safeParse(undefined);
    const shown = def.success && def.data !== undefined ? JSON.stringify(def.data) : '(required or unset)';
    return `  ${key}\n      env ${s.env}, default ${shown}\n      ${s.doc}`;
  });
  return `Settings (JSON config file key, environment variable, default):\n${rows.join('\n')}\n`;
}
