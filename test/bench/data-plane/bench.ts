/**
 * The data-plane benchmark (`npm run bench -- data-plane`). On one image — 1 GiB random data,
 * then 1 GiB zeros — it runs, in this order and each with the page cache dropped first:
 *
 *   1. this machine's read + SHA-256 ceiling (Node crypto, 1 thread, then 2 workers);
 *   2. Backhaul's full backup (real hub process, real agent process; the qemu driver on a qcow2
 *      import of the image in a qemu-storage-daemon when QEMU is installed, else the file driver
 *      on the raw image), restic's and borg's (fixed 4 MiB chunks) full backups of the raw image;
 *   3. 16 rewrites of 4 MiB each, chunk-aligned and spread over the disk (64 MiB), applied to the
 *      raw image and through the daemon to the qcow2 image (so its dirty bitmap sees them);
 *   4. the incremental backups, Backhaul's and the peers' second runs;
 *   5. the restores of the latest backup, each checked against the image's SHA-256;
 *   6. the CPU floor (cpu-floor.ts): what the transport and SHA-256 alone cost per GiB, which
 *      with qemu-storage-daemon's CPU in the full backup bounds from below what any backup of
 *      those bytes can take on this machine's cores.
 *
 * Prints one Markdown table of ratios against the peers and the targets, then notes. Progress goes
 * to stderr. Everything it makes (images, repositories, restores, processes, the database) is
 * removed at the end, also when it fails.
 *
 * Knobs (environment): BENCH_DRIVER (qemu | file), BENCH_DP_RANDOM_MIB (1024), BENCH_DP_ZERO_MIB
 * (1024), BENCH_DP_KEEP=1 keeps the temp directory for a post-mortem, BENCH_DP_PROFILE=DIR writes
 * V8 CPU profiles of hub and agent there. BENCH_DP_WINDOW_MIB=N is an experiment, not Backhaul as
 * shipped: it raises both processes' HTTP/2 flow-control windows (http2-window-patch.ts).
 */
import { rmSync, statfsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../../support/database.js';
import { tempDir } from '../../support/processes.js';
import { markdownTable, mib, ratio, verdict, type ResultRow } from '../results-table.js';
import { BackhaulRig, chooseDriver, makeRunDirs, type DriverName, type JobMeasure } from './backhaul-rig.js';
import { applyRewrites, GiB, imageSize, MiB, planRewrites, sha256File, touchedChunks, writeRawImage, type ImageSpec } from './image.js';
import { Borg, ensurePeers, Restic, type PeerResult, type PeerTools } from './peers.js';
import { measureShaLimit, type ShaLimit } from './sha-limit.js';
import { measureCpuFloor, type CpuFloor } from './cpu-floor.js';
import { DEFAULT_COMPRESSION_LEVEL } from '../../../agent/pipeline/backup-pipeline.js';
import { cacheDropPermitted } from './system.js';
import { windowBytesFromEnv } from './http2-window-patch.js';
import { withCleanup } from '../cleanup-guard.js';

const SPEC: ImageSpec = {
  randomBytes: Number(process.env.BENCH_DP_RANDOM_MIB ?? 1024) * MiB,
  zeroBytes: Number(process.env.BENCH_DP_ZERO_MIB ?? 1024) * MiB,
};
const REWRITES = 16;
const REWRITE_BYTES = 4 * MiB;
const RSS_LIMIT = 256 * MiB;

const TARGET = {
  fullVsBorg: 2,
  fullVsRestic: 2.5,
  incrVsBorg: 7,
  incrReadVsChanged: 1.2,
  restoreVsFull: 1,
};

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const progress = (msg: string) => process.stderr.write(`bench data-plane [${elapsed()}] ${msg}\n`);

interface Measured {
  driver: DriverName;
  tools: PeerTools;
  imageSeconds: number;
  qcow2Bytes: number | null;
  sha: ShaLimit;
  floor: CpuFloor;
  backhaul: { full: JobMeasure; incr: JobMeasure; restore: JobMeasure };
  restic: PeerResult;
  borg: PeerResult;
  idleRss: { agent: number; hub: number };
  changedBytes: number;
  changedChunks: number;
  hubProblems: Map<string, number>;
  agentProblems: Map<string, number>;
  totalSeconds: number;
}

export async function runDataPlane(): Promise<void> {
  const need = 4 * imageSize(SPEC);
  const fs = statfsSync(tmpdir());
  const free = fs.bavail * fs.bsize;
  progress(`${tmpdir()}: ${(free / GiB).toFixed(1)} GiB free, this run needs about ${(need / GiB).toFixed(1)} GiB`);
  if (free < need) throw new Error(`not enough space in ${tmpdir()}: ${(free / GiB).toFixed(1)} GiB free, about ${(need / GiB).toFixed(1)} GiB needed`);

  let root: string | null = null;
  let db: TestDatabase | null = null;
  let rig: BackhaulRig | null = null;
  const keep = process.env.BENCH_DP_KEEP === '1';
  const cleanup = async () => {
    const errors: unknown[] = [];
    if (rig) await rig.stop().catch((e: unknown) => errors.push(e)).finally(() => (rig = null));
    if (db) await db.drop().catch((e: unknown) => errors.push(e)).finally(() => (db = null));
    if (root && !keep) await rm(root, { recursive: true, force: true }).catch((e: unknown) => errors.push(e)).finally(() => (root = null));
    if (errors.length > 0) progress(`cleanup problems: ${errors.map(String).join('; ')}`);
  };
  const m: Measured = await withCleanup({
    cleanup,
    // Should this process die without cleaning up, take the children and the images with it.
    killNow: () => {
      rig?.killNow();
      if (root && !keep) rmSync(root, { recursive: true, force: true });
    },
    progress,
    announce: 'cleaning up',
  }, async () => {
    const tools = await ensurePeers(progress);
    progress(`peers: ${tools.restic}; ${tools.borg}${tools.installSeconds === null ? '' : ` (installed in ${tools.installSeconds.toFixed(1)} s)`}`);
    const driver = await chooseDriver();
    progress(`Backhaul driver: ${driver}`);

    root = await tempDir('bh-bench-dp');
    const dirs = await makeRunDirs(root);
    const raw = join(dirs.image, 'vm.raw');
    const size = imageSize(SPEC);

    progress(`writing the image: ${mib(SPEC.randomBytes)} random, then ${mib(SPEC.zeroBytes)} zeros`);
    const t0 = performance.now();
    await writeRawImage(raw, SPEC);
    const imageSeconds = (performance.now() - t0) / 1000;

    progress('measuring the read + SHA-256 ceiling');
    const sha = await measureShaLimit(raw, 2);
    progress(`read + SHA-256: 1 thread ${mibps(size, sha.oneThreadSeconds)}, ${sha.workers} workers ${mibps(size, sha.workersSeconds)}`);

    rig = new BackhaulRig(driver, dirs, progress);
    let qcow2Bytes: number | null = null;
    if (driver === 'qemu') {
      progress('importing the image into qcow2 (qemu-img convert) and starting qemu-storage-daemon');
      await rig.startStorage(raw);
      qcow2Bytes = (await stat(rig.qsd!.image('disk0'))).blocks * 512;
    }
    db = await createTestDatabase('bh_bench_dp');
    await rig.start(db.url, raw);

    progress('Backhaul: full backup');
    const bhFull = await rig.backup();
    progress(`Backhaul full: ${bhFull.seconds.toFixed(2)} s (${mibps(size, bhFull.seconds)})`);

    const restic = new Restic({ dir: join(dirs.peers, 'restic'), image: raw });
    const borg = new Borg({ dir: join(dirs.peers, 'borg'), image: raw });
    await mkdir(join(dirs.peers, 'restic'), { recursive: true });
    await mkdir(join(dirs.peers, 'borg'), { recursive: true });
    await restic.init();
    await borg.init();
    const timeFile = join(dirs.peers, 'time.txt');
    progress('restic: full backup');
    const resticFull = await restic.backup(timeFile);
    progress(`restic full: ${resticFull.seconds.toFixed(2)} s (${mibps(size, resticFull.seconds)})`);
    progress('borg (fixed 4 MiB): full backup');
    const borgFull = await borg.backup(timeFile);
    progress(`borg full: ${borgFull.seconds.toFixed(2)} s (${mibps(size, borgFull.seconds)})`);

    const rewrites = planRewrites(size, REWRITES, REWRITE_BYTES);
    const changedBytes = rewrites.reduce((a, r) => a + r.data.length, 0);
    const changedChunks = touchedChunks(rewrites);
    progress(`rewriting ${mib(changedBytes)} in ${rewrites.length} places (raw image${driver === 'qemu' ? ', and the qcow2 image through the daemon' : ''})`);
    await applyRewrites(raw, rewrites);
    await rig.rewriteQcow2(rewrites);
    const expected = await sha256File(raw);

    progress('Backhaul: incremental backup');
    const bhIncr = await rig.backup();
    progress(`Backhaul incremental: ${bhIncr.seconds.toFixed(2)} s, read ${mib(bhIncr.row.progress?.bytesRead ?? 0)}`);
    progress('restic: second backup');
    const resticSecond = await restic.backup(timeFile);
    progress(`restic second: ${resticSecond.seconds.toFixed(2)} s`);
    progress('borg: second backup');
    const borgSecond = await borg.backup(timeFile);
    progress(`borg second: ${borgSecond.seconds.toFixed(2)} s`);

    progress('Backhaul: restore of the incremental');
    const bhOut = join(dirs.restore, 'backhaul.raw');
    const bhRestore = await rig.restore(bhIncr.row.backup_id!, bhOut);
    progress(`Backhaul restore: ${bhRestore.seconds.toFixed(2)} s (${mibps(size, bhRestore.seconds)})`);
    await checkRestored('Backhaul', bhOut, expected, bhRestore.row.result?.disks[0]?.sha256);

    progress('restic: restore');
    const rr = await restic.restore(join(dirs.restore, 'restic'), timeFile);
    await checkRestored('restic', rr.path, expected);
    progress('borg: extract');
    const br = await borg.restore(join(dirs.restore, 'borg'), timeFile);
    await checkRestored('borg', br.path, expected);

    progress('measuring the CPU floor (transport and SHA-256 alone, best of 2)');
    const floors = [await measureCpuFloor(), await measureCpuFloor()];
    const floor = floors.reduce((a, b) => (b.transport.agentPerGiB + b.transport.hubPerGiB < a.transport.agentPerGiB + a.transport.hubPerGiB ? b : a));

    const hubProblems = rig.hub!.problems();
    const agentProblems = new Map<string, number>();
    for (const l of rig.agent!.lines) {
      if (typeof l.level !== 'number' || l.level < 40) continue;
      const key = `${l.level >= 50 ? 'error' : 'warn'} "${String(l.msg)}"${l.note ? `: ${String(l.note)}` : ''}`;
      agentProblems.set(key, (agentProblems.get(key) ?? 0) + 1);
    }
    return {
      driver,
      tools,
      imageSeconds,
      qcow2Bytes,
      sha,
      floor,
      backhaul: { full: bhFull, incr: bhIncr, restore: bhRestore },
      restic: { full: resticFull, second: resticSecond, restore: rr.run, restoredPath: rr.path },
      borg: { full: borgFull, second: borgSecond, restore: br.run, restoredPath: br.path },
      idleRss: rig.idleRss,
      changedBytes,
      changedChunks,
      hubProblems,
      agentProblems,
      totalSeconds: 0,
    };
  });
  m.totalSeconds = (performance.now() - started) / 1000;
  report(m);
}

/** The restored image must be the image: by the agent's own digest where it reports one, and by reading the file. */
async function checkRestored(who: string, path: string, expected: string, reported?: string): Promise<void> {
  if (reported !== undefined && reported !== expected) throw new Error(`${who}: the restore reports SHA-256 ${reported}, the image is ${expected}`);
  const actual = await sha256File(path);
  if (actual !== expected) throw new Error(`${who}: the restored image has SHA-256 ${actual}, the image ${expected}`);
  await rm(path, { force: true });
}

const mibps = (bytes: number, seconds: number) => `${(bytes / MiB / seconds).toFixed(0)} MiB/s`;
const secs = (s: number) => `${s.toFixed(2)} s`;
const frac = (x: number) => `${(x * 100).toFixed(0)} %`;

function report(m: Measured): void {
  const size = imageSize(SPEC);
  const { full, incr, restore } = m.backhaul;
  const thr = (s: number) => size / s;
  const both = (s: number) => `${secs(s)}, ${mibps(size, s)}`;
  const qemu = m.driver === 'qemu';

  const fullVsBorg = thr(full.seconds) / thr(m.borg.full.seconds);
  const fullVsRestic = thr(full.seconds) / thr(m.restic.full.seconds);
  const incrVsBorg = m.borg.second.seconds / incr.seconds;
  const incrVsRestic = m.restic.second.seconds / incr.seconds;
  const incrRead = incr.row.progress?.bytesRead ?? 0;
  const readVsChanged = incrRead / m.changedBytes;
  const restoreVsFull = thr(restore.seconds) / thr(full.seconds);
  const jobs = [full, incr, restore];
  const agentPeak = Math.max(...jobs.map((j) => j.agent.peakRss));
  const hubPeak = Math.max(...jobs.map((j) => j.hub.peakRss));
  const peakOf = (sel: (j: JobMeasure) => number) => ['full', 'incremental', 'restore'][jobs.findIndex((j) => sel(j) === Math.max(...jobs.map(sel)))];
  const peerRss = `borg ${mib(Math.max(m.borg.full.peakRss, m.borg.second.peakRss, m.borg.restore.peakRss))}, restic ${mib(Math.max(m.restic.full.peakRss, m.restic.second.peakRss, m.restic.restore.peakRss))}`;
  const ceiling = m.sha.bytes / m.sha.workersSeconds;
  // The CPU floor: what the required work costs per GiB sent, over the cores there are.
  const cores = cpus().length;
  const fullRead = full.row.progress?.bytesRead ?? 0;
  const qsdPerGiB = full.storage && fullRead > 0 ? (full.storage.cpuSeconds * GiB) / fullRead : 0;
  const { transport, sha256PerGiB, zstdPerGiB } = m.floor;
  const floorPerGiB = transport.agentPerGiB + transport.hubPerGiB + 2 * sha256PerGiB + zstdPerGiB.compress + zstdPerGiB.decompress + qsdPerGiB;
  const floorOf = (j: JobMeasure) => (floorPerGiB * (j.row.progress?.bytesTransferred ?? 0)) / GiB / cores;
  const fullTargetTime = m.borg.full.seconds / TARGET.fullVsBorg;
  const incrTargetTime = m.borg.second.seconds / TARGET.incrVsBorg;
  const floorRow = (what: string, j: JobMeasure, targetTime: number, allows: string): ResultRow => ({
    measure: `${what}, CPU floor: the required work on its ${mib(j.row.progress?.bytesTransferred ?? 0)} sent ÷ ${cores} cores`,
    backhaul: secs(floorOf(j)),
    peer: `${secs(targetTime)} (the time ${allows} allows)`,
    vsPeer: ratio(floorOf(j), targetTime),
    target: '',
    vsTarget: '',
    verdict: floorOf(j) <= targetTime ? 'reachable' : 'unreachable',
  });

  const rows: ResultRow[] = [
    {
      measure: 'full backup, throughput (image bytes / time)',
      backhaul: both(full.seconds),
      peer: `${both(m.borg.full.seconds)} (borg fixed 4 MiB)`,
      vsPeer: ratio(fullVsBorg, 1),
      target: `≥ ${TARGET.fullVsBorg}× borg-fixed`,
      vsTarget: ratio(fullVsBorg, TARGET.fullVsBorg),
      verdict: verdict(fullVsBorg >= TARGET.fullVsBorg),
    },
    {
      measure: 'full backup, throughput',
      backhaul: both(full.seconds),
      peer: `${both(m.restic.full.seconds)} (restic)`,
      vsPeer: ratio(fullVsRestic, 1),
      target: `≥ ${TARGET.fullVsRestic}× restic`,
      vsTarget: ratio(fullVsRestic, TARGET.fullVsRestic),
      verdict: verdict(fullVsRestic >= TARGET.fullVsRestic),
    },
    {
      measure: `incremental after ${mib(m.changedBytes)} rewritten in ${REWRITES} places, speed-up (peer time / Backhaul time)`,
      backhaul: secs(incr.seconds),
      peer: `${secs(m.borg.second.seconds)} (borg-fixed, second run)`,
      vsPeer: ratio(incrVsBorg, 1),
      target: `≥ ${TARGET.incrVsBorg}× borg-fixed`,
      vsTarget: ratio(incrVsBorg, TARGET.incrVsBorg),
      verdict: verdict(incrVsBorg >= TARGET.incrVsBorg),
    },
    {
      measure: 'incremental, speed-up',
      backhaul: secs(incr.seconds),
      peer: `${secs(m.restic.second.seconds)} (restic, second run)`,
      vsPeer: ratio(incrVsRestic, 1),
      target: '',
      vsTarget: '',
      verdict: '',
    },
    {
      measure: qemu ? 'incremental, bytes read / bytes changed' : 'incremental, bytes read / bytes changed (file driver: no change tracking, reads all; target is for qemu)',
      backhaul: `${mib(incrRead)} read`,
      peer: `${mib(m.changedBytes)} changed (${m.changedChunks} chunks)`,
      vsPeer: ratio(incrRead, m.changedBytes),
      target: `≤ ${TARGET.incrReadVsChanged}× changed${qemu ? '' : ' (qemu only)'}`,
      vsTarget: ratio(readVsChanged, TARGET.incrReadVsChanged),
      verdict: qemu ? verdict(readVsChanged <= TARGET.incrReadVsChanged) : '',
    },
    {
      measure: 'restore of the incremental, throughput vs own full backup',
      backhaul: both(restore.seconds),
      peer: `${both(full.seconds)} (Backhaul full backup)`,
      vsPeer: ratio(restoreVsFull, 1),
      target: '≥ 1× the full backup',
      vsTarget: ratio(restoreVsFull, TARGET.restoreVsFull),
      verdict: verdict(restoreVsFull >= TARGET.restoreVsFull),
    },
    {
      measure: 'restore, throughput',
      backhaul: both(restore.seconds),
      peer: `${both(m.borg.restore.seconds)} (borg extract)`,
      vsPeer: ratio(thr(restore.seconds), thr(m.borg.restore.seconds)),
      target: '',
      vsTarget: '',
      verdict: '',
    },
    {
      measure: 'restore, throughput',
      backhaul: both(restore.seconds),
      peer: `${both(m.restic.restore.seconds)} (restic restore)`,
      vsPeer: ratio(thr(restore.seconds), thr(m.restic.restore.seconds)),
      target: '',
      vsTarget: '',
      verdict: '',
    },
    {
      measure: `agent peak RSS (VmHWM; highest in the ${peakOf((j) => j.agent.peakRss)})`,
      backhaul: mib(agentPeak),
      peer: peerRss,
      vsPeer: '',
      target: `≤ ${mib(RSS_LIMIT)}`,
      vsTarget: ratio(agentPeak, RSS_LIMIT),
      verdict: verdict(agentPeak <= RSS_LIMIT),
    },
    {
      measure: `hub peak RSS (VmHWM; highest in the ${peakOf((j) => j.hub.peakRss)})`,
      backhaul: mib(hubPeak),
      peer: peerRss,
      vsPeer: '',
      target: `≤ ${mib(RSS_LIMIT)}`,
      vsTarget: ratio(hubPeak, RSS_LIMIT),
      verdict: verdict(hubPeak <= RSS_LIMIT),
    },
    floorRow('full backup', full, fullTargetTime, `≥ ${TARGET.fullVsBorg}× borg-fixed`),
    floorRow('incremental', incr, incrTargetTime, `≥ ${TARGET.incrVsBorg}× borg-fixed's second run`),
    {
      measure: `full backup vs this machine's read + SHA-256 ceiling (${m.sha.workers} workers)`,
      backhaul: mibps(size, full.seconds),
      peer: `${mibps(size, m.sha.workersSeconds)} (1 thread: ${mibps(size, m.sha.oneThreadSeconds)})`,
      vsPeer: ratio(thr(full.seconds), ceiling),
      target: '',
      vsTarget: '',
      verdict: '',
    },
  ];

  const cpu = cpus();
  const busy = full.row.progress?.busy;
  const busyMean = meanBusy(full.samples);
  const stages = busy ? ([['source read', busy.sourceRead], ['hash + compress (workers)', busy.hashCompress], ['network (sink calls)', busy.network], ['hub write', busy.hubWrite]] as const) : [];
  const bottleneck = stages.length ? [...stages].sort((a, b) => b[1] - a[1])[0]! : null;
  const job = (name: string, j: JobMeasure) => {
    const p = j.row.progress;
    const wall = j.seconds;
    const phases = j.phases.map((p, i) => `${p.phase} ${((j.phases[i + 1]?.at ?? j.seconds) - p.at).toFixed(2)} s`).join(', ');
    return (
      `${name}: ${secs(j.seconds)} (created → completed; ${j.phases[0] ? `first seen ${j.phases[0].at.toFixed(2)} s, then ` : ''}${phases}), ${mibps(size, j.seconds)} of image; ` +
      (p ? `read ${mib(p.bytesRead)}, zero ${mib(p.bytesZero)}, reused ${mib(p.bytesReused)}, transferred ${mib(p.bytesTransferred)} (sent ${mib(p.bytesSent)} zstd); ` : '') +
      `agent CPU ${j.agent.cpuSeconds.toFixed(1)} s (${(j.agent.cpuSeconds / wall).toFixed(2)} cores), RSS ${mib(j.agent.rssAtStart)} at start, peak ${mib(j.agent.peakRss)}; ` +
      `hub CPU ${j.hub.cpuSeconds.toFixed(1)} s (${(j.hub.cpuSeconds / wall).toFixed(2)} cores), RSS ${mib(j.hub.rssAtStart)} at start, peak ${mib(j.hub.peakRss)}` +
      (j.agent.peakIsOwn && j.hub.peakIsOwn ? '' : ' (peaks since process start: clear_refs refused)')
    );
  };
  const peer = (name: string, r: PeerResult) =>
    `${name}: full ${secs(r.full.seconds)} (CPU ${r.full.cpuSeconds.toFixed(1)} s, RSS ${mib(r.full.peakRss)}), second ${secs(r.second.seconds)} (CPU ${r.second.cpuSeconds.toFixed(1)} s), ` +
    `restore ${secs(r.restore.seconds)} (CPU ${r.restore.cpuSeconds.toFixed(1)} s, RSS ${mib(r.restore.peakRss)})`;
  const problems = (p: Map<string, number>) => (p.size === 0 ? 'none' : [...p].map(([k, v]) => `${v}× ${k}`).join('; '));
  const drop = cacheDropPermitted();

  const notes = [
    `machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / GiB).toFixed(0)} GiB RAM, Node ${process.version}; hub, agent, PostgreSQL${qemu ? ', qemu-storage-daemon' : ''} and the peers share it, one tool at a time`,
    `Backhaul driver: **${m.driver}**` +
      (qemu
        ? ` (qcow2 import of the image, ${mib(m.qcow2Bytes ?? 0)} allocated, in qemu-storage-daemon; zeros are unallocated, so the agent skips them by block status; the rewrites went through the daemon's NBD export, so the dirty bitmap saw them)`
        : ' (the raw image; no change tracking: the incremental reads everything and sends what the hub lacks)'),
    `image: ${mib(SPEC.randomBytes)} random then ${mib(SPEC.zeroBytes)} zeros (a hole in the raw file), written in ${m.imageSeconds.toFixed(1)} s; restic and borg back up the raw file; ` +
      `rewrites: ${REWRITES} × ${mib(REWRITE_BYTES)} of random data, aligned to 4 MiB and spread over both halves (${m.changedChunks} chunks touched)`,
    `page cache: ${drop ? 'dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run, Backhaul and peers alike' : 'NOT dropped (not permitted here): runs see whatever the cache holds'}; ` +
      'Backhaul times are the hub’s created_at → completed_at of the job (dispatch, snapshot, transfer, index, commit); peer times are the process’s wall time, restores plus a `sync` (Backhaul’s restore fsyncs)',
    `Backhaul idle RSS once connected, before any job: agent ${mib(m.idleRss.agent)}, hub ${mib(m.idleRss.hub)}; each job's peak below is its own (VmHWM reset through /proc/PID/clear_refs at its start)`,
    job('Backhaul full', full),
    job('Backhaul incremental', incr),
    job('Backhaul restore', restore),
    busy
      ? `Backhaul full backup, per-stage busy (jobs.progress->busy, the agent's last 10 s window): source read ${frac(busy.sourceRead)}, hash + compress ${frac(busy.hashCompress)} of ${cpu.length} worker threads, ` +
        `network ${frac(busy.network)}, hub write ${frac(busy.hubWrite)} (the hub's stores of this job's chunks, as each answer reports them); ` +
        (busyMean ? `mean over ${full.samples.length} polled reports: read ${frac(busyMean.sourceRead)}, hash + compress ${frac(busyMean.hashCompress)}, network ${frac(busyMean.network)}; ` : '') +
        `busiest: ${bottleneck![0]}; hub CPU over the job ${(full.hub.cpuSeconds / full.seconds).toFixed(2)} cores, agent ${(full.agent.cpuSeconds / full.seconds).toFixed(2)} cores of ${cpu.length}`
      : 'Backhaul full backup: no per-stage busy fractions were reported',
    peer(`restic (${m.tools.restic})`, m.restic),
    peer(`borg (${m.tools.borg}, --chunker-params fixed,4194304, --encryption=none, lz4)`, m.borg),
    'fairness: restic always encrypts and authenticates (AES-256-CTR + Poly1305) and compresses with zstd; borg runs with --encryption=none (no AES, no HMAC: an advantage to borg), ' +
      'Backhaul does not encrypt at rest but pays TLS (mTLS) on loopback for every byte it sends; all three store compressed chunks durably; restores: Backhaul and borg (extract --sparse) leave the zeros as holes, restic 0.14 has no sparse restore and writes them',
    `CPU floor, per GiB sent: ${floorPerGiB.toFixed(2)} s = transport ${transport.agentPerGiB.toFixed(2)} s on the agent's side + ${transport.hubPerGiB.toFixed(2)} s on the hub's ` +
      `(grpc-js, HTTP/2, mTLS: the agent's DataClient and GrpcChunkSink sending ${mib(transport.bytes)} of 4 MiB chunks, 8 in flight, at ${transport.mibps.toFixed(0)} MiB/s to a process with the hub's gRPC settings that stores nothing; best of 2, measured after the runs) ` +
      `+ 2 × SHA-256 ${sha256PerGiB.toFixed(2)} s (the agent names each chunk, the hub checks it) + zstd ${zstdPerGiB.compress.toFixed(2)} s to compress and ${zstdPerGiB.decompress.toFixed(2)} s to decompress (level ${DEFAULT_COMPRESSION_LEVEL}, random data) ` +
      `+ qemu-storage-daemon ${qsdPerGiB.toFixed(2)} s (its CPU in the full backup per GiB it served). ` +
      'Not counted, so the floor is below the truth: reading the disk, the agent reading NBD, the hub\'s writes and fsyncs, PostgreSQL, the QEMU snapshot, dispatch and commit. "unreachable": the target asks for less time than this work alone takes on these cores',
    `read + SHA-256 ceiling (Node crypto, 4 MiB pieces, cold cache, best of 2): 1 thread ${secs(m.sha.oneThreadSeconds)} (${mibps(m.sha.bytes, m.sha.oneThreadSeconds)}), ${m.sha.workers} workers ${secs(m.sha.workersSeconds)} (${mibps(m.sha.bytes, m.sha.workersSeconds)})`,
    `peers: ${m.tools.installSeconds === null ? 'already installed' : `installed from Debian in ${m.tools.installSeconds.toFixed(1)} s (apt-get update + install)`}`,
    `hub log warnings/errors: ${problems(m.hubProblems)}; agent: ${problems(m.agentProblems)}`,
  ];
  const window = windowBytesFromEnv();
  if (window) {
    notes.unshift(
      `**EXPERIMENT, not Backhaul as shipped**: BENCH_DP_WINDOW_MIB=${window / MiB}: the hub's HTTP/2 receive windows and the agent's were raised to ${mib(window)} by http2-window-patch.ts`,
    );
  }
  process.stdout.write(`\n### Data plane (${m.driver} driver)${window ? ` (EXPERIMENT: HTTP/2 windows ${mib(window)})` : ''}\n\n${markdownTable(rows)}\n\n${notes.map((l) => `- ${l}`).join('\n')}\n\n`);
  process.stdout.write(`Command: \`npm run bench -- data-plane\` (this run: ${m.totalSeconds.toFixed(0)} s after the build).\n`);
}

function meanBusy(samples: JobMeasure['samples']): { sourceRead: number; hashCompress: number; network: number } | null {
  const withBusy = samples.filter((s) => s.busy);
  if (withBusy.length === 0) return null;
  const avg = (k: 'sourceRead' | 'hashCompress' | 'network') => withBusy.reduce((a, s) => a + s.busy![k], 0) / withBusy.length;
  return { sourceRead: avg('sourceRead'), hashCompress: avg('hashCompress'), network: avg('network') };
}
