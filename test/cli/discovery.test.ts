/**
 * What generic gRPC tools see on the hub's port: reflection lists the AdminService and serves
 * its descriptor, and grpc.health.v1 answers SERVING, neither needing a token.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition, type Client, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { Stack } from '../lifecycle/stack.js';
import { Ctl } from './cli-harness.js';
import { readFile } from 'node:fs/promises';

const require = createRequire(import.meta.url);
let stack: Stack;
let ctl: Ctl;

async function clientOf(protoFile: string, service: string): Promise<Client & Record<string, Function>> {
  const pkg = loadPackageDefinition(loadSync(protoFile, { enums: String })) as GrpcObject;
  const Ctor = service.split('.').reduce<any>((o, k) => o[k], pkg) as ServiceClientConstructor;
  return new Ctor(ctl.hub, credentials.createSsl(await readFile(ctl.caFile)), { 'grpc.ssl_target_name_override': HUB_TLS_NAME }) as Client & Record<string, Function>;
}

beforeAll(async () => {
  stack = await Stack.start();
  ctl = await Ctl.for(stack);
});

afterAll(async () => {
  await stack?.stop();
});

describe('discovery', () => {
  it('reflection lists backhaul.v1.AdminService and serves the file that defines it', async () => {
    const proto = join(dirname(require.resolve('@grpc/reflection')), '../proto/grpc/reflection/v1/reflection.proto');
    const client = await clientOf(proto, 'grpc.reflection.v1.ServerReflection');
    const ask = (req: object) =>
      new Promise<any>((resolve, reject) => {
        const call = client.serverReflectionInfo();
        call.on('data', (res: unknown) => {
          resolve(res);
          call.end();
        });
        call.on('error', reject);
        call.write(req);
      });
    const listed = await ask({ listServices: '' });
    const names = listed.listServicesResponse.service.map((s: { name: string }) => s.name);
    expect(names).toContain('backhaul.v1.AdminService');
    expect(names).toContain('grpc.health.v1.Health');
    const file = await ask({ fileContainingSymbol: 'backhaul.v1.AdminService' });
    const descriptors: Buffer[] = file.fileDescriptorResponse.fileDescriptorProto;
    expect(Buffer.concat(descriptors).toString('latin1')).toContain('WatchExecution');
    client.close();
  });

  it('grpc.health.v1 answers SERVING for the hub and for the AdminService', async () => {
    const { protoPath } = (await import('grpc-health-check')) as { protoPath: string };
    const client = await clientOf(protoPath, 'grpc.health.v1.Health');
    const check = (service: string) => new Promise<any>((resolve, reject) => client.check({ service }, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
    expect((await check('')).status).toBe('SERVING');
    expect((await check('backhaul.v1.AdminService')).status).toBe('SERVING');
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: 5 });
    client.close();
  });
});
