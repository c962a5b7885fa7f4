// ProxyUpstreams: named origin pools, routes, load balancing, DNS re-resolution and health (issue 10 §2).
//
// Shape: decisions are pure values with exhaustive tests (Router, SmoothWeightedRoundRobin, LeastOutstanding,
// RendezvousHash, PassiveHealth, ActiveHealth); shared state is immutable snapshots published with a generation
// counter (UpstreamSnapshotBox) plus per-address atomics (EndpointState); I/O runs on two control threads owned by
// UpstreamRuntime (getaddrinfo, health checks), never on an event loop. Workers read through UpstreamSelector.
//
// Hand-written because no library on the mirror does this for our own event loop: swift-nio's and AsyncHTTPClient's
// pools are tied to NIO, and the algorithms are small (nginx smooth weighted round-robin, weighted rendezvous
// hashing, HAProxy rise/fall, nginx max_fails/fail_timeout), each documented where it lives.
