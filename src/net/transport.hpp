// Peer transport: how the node layer sends core messages to peers and receives theirs.
//
// Transport is the interface the node layer depends on (a simulated network can stand in for it
// in tests). TcpTransport is the real one: Asio TCP, optionally mutual TLS, Cap'n Proto frames.
//
// TcpTransport's shape:
// - One outbound connection per peer, dialled by this node and used only to send. It starts with
//   a handshake (protocol version, cluster and group ids, sender and receiver ids) that the peer
//   answers.
//   When it fails or drops, it is dialled again after a jittered, exponentially growing delay
//   between reconnect_delay_min and reconnect_delay_max.
// - An acceptor. Each accepted connection must open with a handshake from a configured peer of
//   this cluster and version (with TLS, one whose certificate names it); it is then only read
//   from, and closed when it stays silent for idle_timeout or a frame takes longer to arrive
//   than frame_timeout and frame_bytes_per_second_min allow. Its frames are decoded in place and
//   delivered to the receive handler with `from` set to the authenticated sender. A newer
//   connection from the same peer replaces an older one, so connections whose far end died
//   unnoticed do not pile up. Connections still in their handshake are few and short-lived
//   (handshakes_max, handshakes_per_source_max, inbound_handshake_timeout): past a limit, the
//   newest connection closes the oldest such one, so strangers holding connections open cannot
//   keep peers out; an authenticated connection is never closed to make room.
// - Keepalives. An outbound connection that has sent nothing for keepalive_interval sends a
//   keepalive frame, so that a connection with no traffic (say, between two followers) is not
//   closed as idle by its acceptor. The acceptor counts it as liveness and delivers nothing.
//   Keepalives never enter the send queue: the writer sends one only when the queue is empty,
//   straight on the connection, at most one at a time. So they never count against the queue's
//   limits, never make send() answer overloaded, never wait behind queued frames (a queued frame
//   is itself proof of liveness) and are never sent again after a reconnect.
// - A bounded send queue per peer. send() is accepted while the peer's queue holds fewer than
//   send_queue_messages_max frames and fewer than send_queue_bytes_max bytes (so the queue never
//   holds more than send_queue_bytes_max + frame_bytes_max); past that it returns overloaded and
//   writable() tells the caller when to try again. Queued frames survive a reconnect: frames whose
//   write failed go out again, whole, on the next connection (Raft tolerates the duplicates).
// - Peers may be added and removed while it runs (add_peer, remove_peer).
// - Everything runs on the one executor given: call every member from that executor's thread
//   (or, for a strand, from within it).
// - Bad input from the network closes that connection with a logged reason and nothing else.
//   The log stays bounded and truthful under a flood: lines a stranger can provoke are
//   rate-limited (the next line let through counts those left out), a dial failure is logged
//   once per outage, and peer-supplied text is escaped and cut short before it is logged.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>

#include <coraft/result.hpp>
#include <coraft/types.hpp>

#include "core/message.hpp"
#include "net/codec.hpp"

namespace coraft::net {

struct PeerAddress {
  NodeId id;
  std::string host;  // a name or a numeric address
  std::uint16_t port = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Queues `m` for peer m.to. m.from is not sent: the receiver takes the sender from the
  // connection's handshake. Errors: overloaded (that peer's queue is full), too_large (the
  // message can never fit a frame), invalid_argument (m.to is not a configured peer),
  // shutting_down (after stop()).
  virtual Result<void> send(core::Message m) = 0;
  // Completes once `peer`'s queue has room again (at once if it has, or after stop()).
  virtual asio::awaitable<void> writable(NodeId peer) = 0;
  // Closes every connection and cancels every coroutine; nothing is delivered afterwards.
  virtual void stop() = 0;
  // stop(), then completes once every coroutine of the transport has finished.
  virtual asio::awaitable<void> shutdown() = 0;
  // Makes `peer` a peer from now on: messages may be sent to it (over a connection dialled to
  // its address) and its connections are accepted. For a peer already known, only its address
  // changes (used from the next dial on). Precondition: peer.id is neither no_node nor this node.
  virtual void add_peer(PeerAddress peer) = 0;
  // Forgets `peer`: its queued messages are dropped, its connections (both ways) closed, its
  // writable() waiters released, and its handshakes refused from now on. Does nothing for an id
  // that is not a peer.
  virtual void remove_peer(NodeId peer) = 0;
};

// Mutual TLS: each side presents a certificate and must be shown one signed by the cluster CA
// that names the node the peer is.
//
// Without TLS nothing is authenticated: whoever can reach the listening port and knows (or
// guesses) the cluster id and a peer's node id can speak as that peer, and read nothing but can
// make this node believe anything. Plaintext is for networks only trusted machines can reach;
// anywhere else, TLS is what keeps strangers out. A refused plaintext handshake is told only
// "refused" (no cluster id, node id or reason), so probing the port reveals no configuration.
//
// The identity rule: node N's certificate names it when it carries a DNS subjectAltName equal to
// certificate_name(config, N), that is "node-<N>" ("node-7"), or "<cluster_name>-node-<N>"
// ("blue-node-7") when cluster_name is set. A certificate without any DNS subjectAltName may name
// it in its subject common name instead. Wildcards never match. The acceptor checks the
// certificate against the sender id in the peer's handshake; the dialler checks it against the
// id of the peer it dialled. Either refuses a mismatch and logs it, so a certificate signed by the
// cluster CA cannot be used to speak as another node.
struct TlsConfig {
  std::string ca_file;       // PEM: the cluster's CA certificate
  std::string cert_file;     // PEM: this node's certificate (chain)
  std::string key_file;      // PEM: this node's private key
  std::string cluster_name;  // prefixes the names certificates must carry; may be empty
};

// The name node `id`'s certificate must carry under `tls` (see TlsConfig).
[[nodiscard]] std::string certificate_name(const TlsConfig& tls, NodeId id);

struct TransportConfig {
  std::uint64_t cluster_id = 0;
  // The Raft group this transport carries. Every handshake names it and either side refuses a
  // mismatch, so a later transport that serves many groups of one process over shared
  // connections changes no frame format: only the routing behind the handshake.
  std::uint64_t group_id = 0;
  NodeId self;
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;  // 0: an ephemeral port, see TcpTransport::local_port()
  std::vector<PeerAddress> peers;
  CodecLimits limits;
  std::size_t send_queue_messages_max = 4096;
  std::size_t send_queue_bytes_max = std::size_t{64} << 20;
  // At most this many bytes of queued frames go into one gathered write.
  std::size_t write_batch_bytes_max = std::size_t{4} << 20;
  std::size_t receive_chunk_bytes = std::size_t{1} << 20;
  // Accepted connections that have not finished their handshake yet (TLS and the peer
  // handshake), in all and from one source address. A connection that arrives past either
  // limit closes the oldest handshaking connection it competes with, rather than being refused:
  // strangers holding connections open cannot lock peers out, since a peer's connection only has
  // to finish its handshake before that many newer ones arrive. Authenticated connections are
  // never closed to make room.
  std::size_t handshakes_max = 64;
  std::size_t handshakes_per_source_max = 16;
  // An accepted connection must finish TLS and the peer handshake within this.
  std::chrono::milliseconds inbound_handshake_timeout{1000};
  // Authenticated inbound connections open at once; a handshake past this is refused. Each peer
  // holds at most one (a newer one replaces the older), so it binds only with more peers.
  std::size_t inbound_connections_max = 256;
  std::chrono::milliseconds reconnect_delay_min{10};
  std::chrono::milliseconds reconnect_delay_max{2000};
  // Dialling: connecting, the TLS handshake and the peer handshake must finish within this.
  std::chrono::milliseconds handshake_timeout{2000};
  // An inbound connection that completed its handshake and then receives no byte for this long
  // is closed (its peer dials again if it is alive). Peers' keepalives keep healthy connections
  // that carry nothing else open. Zero disables the check.
  std::chrono::milliseconds idle_timeout{5000};
  // A frame on an authenticated inbound connection, once its first bytes arrived, must arrive
  // whole within frame_timeout plus its size at frame_bytes_per_second_min, or the connection
  // is closed: bytes trickling in keep idle_timeout from firing, but cannot hold a connection
  // and its receive buffer for ever. The check runs at least every quarter of frame_timeout.
  // Zero disables it.
  std::chrono::milliseconds frame_timeout{10000};
  std::size_t frame_bytes_per_second_min = std::size_t{1} << 20;
  // An outbound connection that has sent nothing for this long sends a keepalive frame. Unset:
  // a third of idle_timeout, or no keepalives when idle_timeout is zero. Zero disables them.
  // When both are non-zero it must be shorter than idle_timeout (start() refuses otherwise).
  // The keepalives must beat the acceptor's idle_timeout, not this node's: give peers the same
  // idle_timeout, or set this below the smallest of theirs. A peer built before keepalives
  // existed closes the connection on one (an unknown frame kind): set zero while any remain.
  std::optional<std::chrono::milliseconds> keepalive_interval;
  std::optional<TlsConfig> tls;  // plaintext, which authenticates nothing, when empty
  std::uint64_t seed = 1;        // seeds the reconnect jitter
};

// Receives each message from an authenticated peer, on the transport's executor.
using ReceiveHandler = std::function<void(core::Message)>;

class TcpTransport final : public Transport {
 public:
  struct PeerStats {
    bool connected = false;
    std::size_t queued_messages = 0;
    std::size_t queued_bytes = 0;
    std::uint64_t connects = 0;         // handshakes completed on the outbound connection
    std::uint64_t frames_sent = 0;      // queued frames written (keepalives not included)
    std::uint64_t keepalives_sent = 0;  // keepalive frames written
  };

  // Every coroutine of the transport runs on `ex` (see "Everything runs on the one executor").
  TcpTransport(asio::any_io_executor ex, TransportConfig config, ReceiveHandler on_receive);
  TcpTransport(asio::io_context& io, TransportConfig config, ReceiveHandler on_receive);
  // Precondition: never started, or stopped() (stop(), then let the executor run).
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // Listens and starts dialling the peers. Fails with invalid_argument when the address cannot
  // be bound, the TLS files cannot be loaded or keepalive_interval is not below idle_timeout.
  [[nodiscard]] Result<void> start();
  [[nodiscard]] std::uint16_t local_port() const;

  Result<void> send(core::Message m) override;
  asio::awaitable<void> writable(NodeId peer) override;
  void stop() override;
  [[nodiscard]] asio::awaitable<void> shutdown() override;
  void add_peer(PeerAddress peer) override;
  void remove_peer(NodeId peer) override;
  // True once stop() was called and every coroutine has finished.
  [[nodiscard]] bool stopped() const;

  // Where `peer` is dialled from the next attempt on. Precondition: `peer` is a peer.
  void set_peer_address(NodeId peer, std::string host, std::uint16_t port);
  // Precondition: `peer` is a peer.
  [[nodiscard]] PeerStats peer_stats(NodeId peer) const;
  // Inbound connections that completed their handshake and are open.
  [[nodiscard]] std::size_t inbound_connections() const;

  struct InboundStats {
    std::size_t handshaking = 0;         // accepted connections in their handshake now
    std::uint64_t accepted = 0;          // connections accepted so far
    std::uint64_t authenticated = 0;     // handshakes accepted so far
    std::uint64_t refused = 0;           // handshakes refused, failed or timed out so far
    std::uint64_t evicted = 0;           // handshaking connections closed to make room so far
    std::uint64_t accept_errors = 0;     // failed accepts (say, out of descriptors) so far
    std::uint64_t lines_suppressed = 0;  // log lines left out by the rate limits so far
  };
  [[nodiscard]] InboundStats inbound_stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coraft::net
