/**
 * The peer for the REST latencies, run as its own process like the hub: a bare fastify server on
 * the benchmark's database, with a pool as large as the hub's, doing the least work each call
 * needs. GET /executions/:id is a one-row select of the hub's own executions row; POST
 * /flows/:id/run inserts one row in a transaction. No auth, no validation, no read model.
 *
 * Input: DATABASE_URL, BENCH_PEER_POOL_MAX. Prints {"port": N} when listening. Stops on SIGTERM,
 * or when its stdin closes.
 */
import Fastify from 'fastify';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.BENCH_PEER_POOL_MAX ?? 10) });
await pool.query('create table if not exists bench_peer_runs (id uuid primary key default gen_random_uuid(), flow_id uuid not null, created_at timestamptz not null default now())');

const app = Fastify();
app.get<{ Params: { id: string } }>('/executions/:id', async (req, reply) => {
  const { rows } = await pool.query('select * from executions where id = $1', [req.params.id]);
  return rows[0] ? rows[0] : reply.code(404).send({ code: 'NOT_FOUND' });
});
app.post<{ Params: { id: string } }>('/flows/:id/run', async (req, reply) => {
  const c = await pool.connect();
  try {
    await c.query('begin');
    const { rows } = await c.query('insert into bench_peer_runs (flow_id) values ($1) returning *', [req.params.id]);
    await c.query('commit');
    return reply.code(202).send(rows[0]);
  } catch (err) {
    await c.query('rollback');
    throw err;
  } finally {
    c.release();
  }
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ port: Number(new URL(address).port) })}\n`);

const stop = () => void app.close().then(() => pool.end()).finally(() => process.exit(0));
// stdin is a pipe from the benchmark: when it closes, the benchmark is gone, and so is this server.
process.stdin.resume().on('end', stop);
process.once('SIGTERM', stop);
