// TcpTransport's private state, shared by transport.cpp (setup, sending, accepting) and
// transport_dial.cpp (the outbound connections).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <coraft/log.hpp>

#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include "net/codec.hpp"
#include "net/frame_reader.hpp"
#include "net/log_guard.hpp"
#include "net/stream.hpp"
#include "net/transport.hpp"

namespace coraft::net {

// The handshake frame is tiny; before it arrives an unauthenticated connection may not make
// this node allocate more than this much.
inline constexpr std::size_t handshake_frame_bytes_max = 4096;
// Buffers in one gathered write (an external payload takes two).
inline constexpr std::size_t write_buffers_max = 1024;

// An event coroutines wait on: a timer that never expires and is cancelled to wake them.
void init_event(asio::steady_timer& t);

struct Peer {
  explicit Peer(const asio::any_io_executor& ex, PeerAddress a)
      : address(std::move(a)), wake(ex), room(ex), backoff(ex) {
    init_event(wake);
    init_event(room);
  }
  PeerAddress address;
  std::deque<OutFrame> queue;
  std::size_t queued_bytes = 0;
  // The outbound connection while one exists. Only the dial loop replaces or destroys it.
  std::unique_ptr<Stream> stream;
  asio::steady_timer wake;     // event: a frame was queued
  asio::steady_timer room;     // event: the queue drained to half its limits
  asio::steady_timer backoff;  // the delay before the next dial
  bool connected = false;
  bool dialling = false;  // its dial_loop is running
  bool removed = false;   // remove_peer() took it out of `peers`; it is in `retired`
  std::uint64_t connects = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t keepalives_sent = 0;
};

struct Inbound {
  std::unique_ptr<Stream> stream;
  std::string remote;        // "address:port"
  asio::ip::address source;  // the remote address, the unit of handshakes_per_source_max
  bool handshaking = true;   // until the handshake is accepted or refused
  bool evicted = false;      // closed in its handshake to make room (see make_room)
  NodeId sender;             // no_node until the handshake is accepted
  // When the last bytes arrived (from the handshake's acceptance on).
  std::chrono::steady_clock::time_point last_received{};
  // The frame being received: when its first bytes arrived and, once known, its size.
  std::optional<std::chrono::steady_clock::time_point> frame_started;
  std::size_t frame_bytes = 0;
};

struct TcpTransport::Impl {
  Impl(asio::any_io_executor ex, TransportConfig config, ReceiveHandler on_receive);

  // Runs `a` as a tracked coroutine; an exception escaping it is a bug and stops the process.
  void spawn(asio::awaitable<void> a, const char* what);
  [[nodiscard]] Peer* find(NodeId id) const;
  [[nodiscard]] bool full(const Peer& p) const;

  // Logs unless `limiter` holds the line back; the next line it lets through says how many it
  // held back meanwhile.
  template <class... Args>
  void log_limited(LogLimiter& limiter, LogLevel level, const Args&... args) {
    if (!log_enabled(level)) return;
    if (!limiter.allow(std::chrono::steady_clock::now())) return;
    log(level, args..., suppressed_note(limiter.take_suppressed()));
  }

  // transport.cpp: the accepting side.
  asio::awaitable<void> accept_loop();
  // Closes the oldest handshaking connection when one more from `source` would break
  // handshakes_per_source_max or handshakes_max.
  void make_room(const asio::ip::address& source);
  // Out of descriptors or memory: accepting again at once would fail again.
  [[nodiscard]] static bool out_of_resources(const std::error_code& ec);
  // How long to wait before accepting again after the `accept_failures`th such failure in a
  // row; logs the failure (the first of all as an error naming the descriptor limit).
  [[nodiscard]] std::chrono::milliseconds accept_backoff_delay(const std::error_code& ec);
  asio::awaitable<void> serve(std::list<Inbound>::iterator it);
  asio::awaitable<void> accept_handshake(Inbound& in, FrameReader& reader,
                                         std::optional<Result<NodeId>>& out);
  [[nodiscard]] Result<NodeId> check_handshake(const FrameBody& body) const;
  // With TLS: whether the peer's certificate on `s` names node `claimed` (see TlsConfig).
  [[nodiscard]] Result<void> check_identity(const Stream& s, NodeId claimed) const;
  // Closes the other open connections from `newest`'s sender.
  void supersede(const Inbound& newest);
  asio::awaitable<void> receive_loop(Inbound& in, FrameReader& reader);
  // Closes `in` once nothing has arrived on it for idle_timeout, or once a frame has taken
  // longer to arrive than frame_timeout and frame_bytes_per_second_min allow.
  asio::awaitable<void> watch_progress(Inbound& in);
  // Notes the frame in progress on `in` once `reader` holds no complete frame.
  void track_frame(Inbound& in, const FrameReader& reader);
  // When the frame being received on `in` must have arrived; nullopt when none is.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> frame_deadline(
      const Inbound& in) const;

  // transport_dial.cpp: the dialling side.
  void start_dialling(Peer& p);
  asio::awaitable<void> dial_loop(Peer& p);
  asio::awaitable<Result<void>> establish(Peer& p);
  void report_dial_failure(const Peer& p, const Error& e, std::uint64_t failures,
                           std::vector<std::error_code>& reported);
  asio::awaitable<void> dial(Peer& p, std::optional<Result<void>>& out);
  [[nodiscard]] Result<void> check_reply(const Peer& p, const FrameBody& body) const;
  asio::awaitable<void> write_loop(Peer& p);
  // Waits until a frame is queued, the connection ends or a keepalive is due; sends the
  // keepalives that fall due meanwhile. False when a keepalive's write failed.
  asio::awaitable<bool> wait_for_frames(Peer& p, std::chrono::steady_clock::time_point& last_sent);
  asio::awaitable<void> watch_close(Peer& p);

  asio::any_io_executor ex;
  TransportConfig config;
  CodecLimits handshake_limits;
  // config.keepalive_interval resolved (see TransportConfig); zero: no keepalives.
  std::chrono::milliseconds keepalive_interval{0};
  ReceiveHandler on_receive;
  std::unique_ptr<asio::ssl::context> tls;
  asio::ip::tcp::acceptor acceptor;
  std::map<NodeId, std::unique_ptr<Peer>> peers;
  // Removed peers whose dial_loop has not finished yet; it destroys them as it ends.
  std::list<std::unique_ptr<Peer>> retired;
  std::list<Inbound> inbound;
  TcpTransport::InboundStats inbound_counts;  // its counters (the rest is computed)
  // Lines about connections a stranger can open at will, and about authenticated ones.
  LogLimiter refusal_log{10, std::chrono::seconds(10)};
  LogLimiter inbound_log{20, std::chrono::seconds(10)};
  std::mt19937_64 rng;
  asio::steady_timer accept_backoff;  // the delay before accepting again after running out
  std::uint64_t accept_failures = 0;  // out-of-resource failures in a row
  bool descriptors_reported = false;  // the error about the descriptor limit was logged
  asio::steady_timer drained;         // event: the last coroutine finished after stop()
  bool started = false;
  bool stopping = false;
  std::size_t live = 0;  // coroutines running
};

// Reads until `reader` yields a complete frame; connection_closed when the stream ends first.
asio::awaitable<Result<Bytes>> read_frame(Stream& s, FrameReader& reader);
// Closes `s` if `deadline` expires first, and records that it did.
asio::awaitable<void> expire(asio::steady_timer& deadline, Stream& s, bool& fired);

}  // namespace coraft::net
