import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * Keepalive for the long-lived control stream. Both ends ping, so a dead peer or a
 * silently dropped NAT mapping is noticed within about keepalive time + timeout.
 * The server must permit pings at least as often as the client sends them, or it
 * answers with GOAWAY "too_many_pings".
 */
export const KEEPALIVE_TIME_MS = 20_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;

export const clientKeepalive: ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.max_pings_without_data': 0,
};

export const serverKeepalive: ChannelOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.max_connection_age_grace_ms': 10_000,
};

/**
 * The name every hub certificate carries. Agents pin the private CA and check this name
 * instead of whatever host or address they dialled, so a hub is reachable by any address.
 */
export const HUB_TLS_NAME = 'hub.backhaul.internal';
