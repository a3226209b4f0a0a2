import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { messageOf, WorkerPoolError } from './worker-pool-error.js';

/**
 * Starting a worker thread from compiled output and from TypeScript sources.
 *
 * In production hub and agent run tsc's output from dist/, where the worker is a .js file beside the
 * module that starts it. Under vitest the modules are .ts sources run by vitest's own module
 * runner, which worker threads do not get, and Node 20 cannot load .ts itself. There the worker
 * starts from a small bootstrap that registers module hooks (node:module register): specifiers
 * such as "./x.js" fall back to the "./x.ts" beside them, and each .ts module is transpiled by
 * the project's TypeScript in the thread that started the worker, which sends the JavaScript over
 * a MessagePort. TypeScript is thus loaded once per process, not once per thread (~1 s each).
 * Which path applies is decided by what exists on disk, not by environment variables.
 */
export interface WorkerEntry {
  mode: 'compiled' | 'source';
  /** The worker module proper (.js or .ts). */
  script: string;
}

/** `compiled` is where the worker's .js is in the build, e.g. new URL('./chunk-worker.js', import.meta.url). */
export function resolveWorkerEntry(compiled: URL): WorkerEntry {
  const jsPath = fileURLToPath(compiled);
  if (existsSync(jsPath)) return { mode: 'compiled', script: jsPath };
  const tsPath = jsPath.replace(/\.js$/, '.ts');
  if (tsPath !== jsPath && existsSync(tsPath)) {
    loadTypeScript(tsPath); // fail here, with a clear error, rather than in every thread
    return { mode: 'source', script: tsPath };
  }
  throw new WorkerPoolError('WORKER_UNAVAILABLE', `worker script not found: neither ${jsPath} nor ${tsPath} exists`, { script: jsPath });
}

export function startWorker(entry: WorkerEntry): Worker {
  if (entry.mode === 'compiled') return new Worker(entry.script);
  const { port1, port2 } = new MessageChannel();
  serveTranspiledSources(port1);
  const worker = new Worker(BOOTSTRAP, { workerData: { sourcePort: port2, script: pathToFileURL(entry.script).href }, transferList: [port2] });
  worker.once('exit', () => port1.close());
  return worker;
}

interface SourceRequest {
  id: number;
  url: string;
}

type SourceReply = { id: number; source: string } | { id: number; error: string };

function serveTranspiledSources(port: MessagePort): void {
  port.on('message', (req: SourceRequest) => {
    let reply: SourceReply;
    try {
      reply = { id: req.id, source: transpile(fileURLToPath(req.url)) };
    } catch (err) {
      // Sent to the hooks, which fail the import; the worker then exits and its task is rejected.
      reply = { id: req.id, error: `cannot transpile ${req.url}: ${messageOf(err)}` };
    }
    port.postMessage(reply);
  });
  // Serving sources must not keep the process alive; the worker itself does while it runs.
  port.unref();
}

type TypeScriptModule = typeof import('typescript');
let typescript: TypeScriptModule | undefined;
const transpiled = new Map<string, { mtimeMs: number; source: string }>();

function loadTypeScript(script: string): TypeScriptModule {
  try {
    typescript ??= createRequire(import.meta.url)('typescript') as TypeScriptModule;
    return typescript;
  } catch (err) {
    throw new WorkerPoolError('WORKER_UNAVAILABLE', `running the worker from its .ts source needs the typescript package: ${messageOf(err)}`, { script }, { cause: err });
  }
}

function transpile(path: string): string {
  const { mtimeMs } = statSync(path);
  const hit = transpiled.get(path);
  if (hit && hit.mtimeMs === mtimeMs) return hit.source;
  const ts = loadTypeScript(path);
  // Types are only stripped here; tsc checks the same files in the build.
  const out = ts.transpileModule(readFileSync(path, 'utf8'), {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  transpiled.set(path, { mtimeMs, source: out.outputText });
  return out.outputText;
}

function dataUrl(source: string): URL {
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

/** Module hooks of a worker run from sources; they ask the starting thread for each .ts module. */
const HOOKS = dataUrl(`
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

let port;
let nextId = 0;
const waiting = new Map();

export function initialize(data) {
  port = data.sourcePort;
  port.on('message', (reply) => {
    const w = waiting.get(reply.id);
    waiting.delete(reply.id);
    if ('error' in reply) w.reject(new Error(reply.error));
    else w.resolve(reply.source);
  });
}

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const parent = context.parentURL;
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !parent?.startsWith('file:') || !/^\\.\\.?\\//.test(specifier) || !specifier.endsWith('.js')) throw err;
    const source = new URL(specifier.slice(0, -3) + '.ts', parent);
    if (!existsSync(fileURLToPath(source))) throw err;
    return { url: source.href, shortCircuit: true };
  }
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const source = await new Promise((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, { resolve, reject });
    port.postMessage({ id, url });
  });
  return { format: 'module', source, shortCircuit: true };
}
`);

const BOOTSTRAP = dataUrl(`
import { register } from 'node:module';
import { workerData } from 'node:worker_threads';
register(${JSON.stringify(HOOKS.href)}, { data: { sourcePort: workerData.sourcePort }, transferList: [workerData.sourcePort] });
await import(workerData.script);
`);
