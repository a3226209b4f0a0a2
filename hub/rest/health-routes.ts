import { HubError } from '../errors.js';
import { route } from './route.js';
import { Health } from './schemas.js';

/** How long /readyz waits for the database before it answers 503. */
const READY_TIMEOUT_MS = 2_000;

/** Liveness and readiness for load balancers and systemd watchdogs; no token needed. */
export const healthRoutes = [
  route({
    method: 'GET',
    url: '/healthz',
    access: 'public',
    summary: 'The process is up and serving HTTP.',
    status: 200,
    response: Health,
    handler: async () => ({ status: 'ok' }),
  }),
  route({
    method: 'GET',
    url: '/readyz',
    access: 'public',
    summary: 'The hub can serve requests: its database answers. 503 otherwise.',
    status: 200,
    response: Health,
    errors: ['UNAVAILABLE'],
    handler: async ({ deps }) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HubError('UNAVAILABLE', `the database did not answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      });
      try {
        await Promise.race([deps.orm.em.fork().execute('select 1'), timeout]);
      } finally {
        clearTimeout(timer);
      }
      return { status: 'ready' };
    },
  }),
];
