// The internal RPC between nodes, master and clients (DESIGN.md, "Wire formats"):
// length-prefixed msgpack frames, requests and replies multiplexed by id, a deadline on
// every request. frame.ts is the pure codec, envelope.ts the request/reply shapes,
// server.ts and client.ts the TCP ends, errors.ts what a caller branches on.
export {
  DEFAULT_FRAME_LIMITS,
  encodeFrame,
  frameLimits,
  FrameDecoder,
  FrameError,
  HEADER_BYTES,
  type DecodeResult,
  type Frame,
  type FrameErrorCode,
  type FrameLimits,
} from './frame.js';
export { CONNECTION_ID, REPLY_TYPE, type WireError } from './envelope.js';
export {
  RpcBusy,
  RpcEncodeError,
  RpcError,
  RpcProtocolError,
  RpcRemoteError,
  RpcTimeout,
  RpcUnavailable,
  type UnavailableReason,
} from './errors.js';
export { RpcServer, type RpcContext, type RpcHandler, type RpcServerCounters, type RpcServerOptions } from './server.js';
export { RpcClient, type CallOptions, type RpcClientCounters, type RpcClientOptions } from './client.js';
export { globalTimers, type Timers } from './timers.js';
export { RpcPeers, splitAddr } from './peers.js';
export { MasterLink, type MasterLinkCounters, type MasterLinkOptions } from './master-link.js';
