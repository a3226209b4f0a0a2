import { createConnection } from 'node:net';
import { QmpCommandError, type QmpClient } from './qmp-client.js';

/**
 * QEMU's one NBD server. The driver starts it on a job-named unix socket when the target names
 * no server of its own (target option `nbdSocket`), and stops it when that job is released.
 * QEMU 7.2 offers no query for the server's address, hence the socket-file checks below.
 */

export async function startNbdServer(qmp: QmpClient, path: string): Promise<void> {
  // QEMU 7.2 takes SocketAddressLegacy here: {type, data: {path}}.
  await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path } } });
}

/** Stops the server; true if one was running. */
export async function stopNbdServer(qmp: QmpClient): Promise<boolean> {
  try {
    await qmp.execute('nbd-server-stop');
    return true;
  } catch (err) {
    // QEMU has no error class for this; its message is the only signal that nothing ran.
    if (err instanceof QmpCommandError && /not running/i.test(err.desc)) return false;
    throw err;
  }
}

export const isAlreadyRunning = (err: unknown) => err instanceof QmpCommandError && /already running/i.test(err.desc);

/** Whether something accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ path });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
