/**
 * The backends' gRPC services from the project's proto files (proto/), loaded one way for every caller: the poller,
 * the trading actions and the tests' stand-in servers must decode exactly the same messages.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Enums by name, int64 as numbers, every field present (a zero value included), field names as in the file. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The packages of `proto/<file>` (`order.proto`, `risk.proto`): package name → service name → service. */
export function grpcPackage(file: string): Record<string, Record<string, grpc.ServiceClientConstructor>> {
  const path = fileURLToPath(new URL(`../proto/${file}`, import.meta.url));
  return grpc.loadPackageDefinition(protoLoader.loadSync(path, LOADER_OPTIONS)) as Record<
    string,
    Record<string, grpc.ServiceClientConstructor>
  >;
}

/** The call metadata of a backend with an API key (`authorization: Bearer <key>`), or none. */
export function apiKeyMetadata(apiKey: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (apiKey) metadata.set('authorization', `Bearer ${apiKey}`);
  return metadata;
}
