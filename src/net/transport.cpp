// TcpTransport: setup, the public calls, and the accepting side of every connection.
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "net/transport_impl.hpp"

namespace coraft::net {
namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using namespace asio::experimental::awaitable_operators;

// The reason a refused plaintext handshake is given, whatever the refusal's cause.
constexpr std::string_view refusal_reason = "refused; the receiving node's log says why";

Result<std::unique_ptr<asio::ssl::context>> make_tls(const TlsConfig& c) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls);
  std::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1,
                   ec);
  auto fail = [](const std::string& what, const std::string& file, std::error_code e) {
    return Error(Errc::invalid_argument,
                 "TLS: cannot load " + what + " '" + file + "': " + e.message());
  };
  if (ctx->load_verify_file(c.ca_file, ec); ec) return fail("CA certificate", c.ca_file, ec);
  if (ctx->use_certificate_chain_file(c.cert_file, ec); ec)
    return fail("certificate", c.cert_file, ec);
  if (ctx->use_private_key_file(c.key_file, asio::ssl::context::pem, ec); ec) {
    return fail("private key", c.key_file, ec);
  }
  // Both sides must present a certificate signed by the cluster's CA.
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  return ctx;
}

std::chrono::milliseconds resolve_keepalive(const TransportConfig& c) {
  if (c.keepalive_interval) return *c.keepalive_interval;
  return c.idle_timeout.count() > 0 ? c.idle_timeout / 3 : std::chrono::milliseconds(0);
}

Result<void> check_keepalive(const TransportConfig& c, std::chrono::milliseconds keepalive) {
  if (keepalive.count() < 0 || c.idle_timeout.count() < 0) {
    return Error(
        Errc::invalid_argument,
        detail::concat("idle_timeout (", c.idle_timeout.count(), " ms) and keepalive_interval (",
                       keepalive.count(), " ms) must not be negative"));
  }
  if (keepalive.count() > 0 && c.idle_timeout.count() > 0 && keepalive >= c.idle_timeout) {
    return Error(Errc::invalid_argument,
                 detail::concat("keepalive_interval (", keepalive.count(),
                                " ms) must be shorter than idle_timeout (", c.idle_timeout.count(),
                                " ms), or peers would close idle connections"));
  }
  return {};
}

}  // namespace

std::string certificate_name(const TlsConfig& tls, NodeId id) {
  std::string name = detail::concat("node-", id);
  return tls.cluster_name.empty() ? name : tls.cluster_name + "-" + name;
}

void init_event(asio::steady_timer& t) {
  t.expires_at(asio::steady_timer::time_point::max());
}

asio::awaitable<Result<Bytes>> read_frame(Stream& s, FrameReader& reader) {
  for (;;) {
    auto next = reader.next();
    if (!next) co_return next.error();
    if (*next) co_return std::move(**next);
    auto [ec, n] = co_await s.read_some(reader.prepare());
    if (ec) {
      co_return Error(Errc::connection_closed, ec == asio::error::eof
                                                   ? std::string("the peer closed the connection")
                                                   : ec.message());
    }
    reader.commit(n);
  }
}

asio::awaitable<void> expire(asio::steady_timer& deadline, Stream& s, bool& fired) {
  auto [ec] = co_await deadline.async_wait(use_tuple);
  if (!ec) {
    fired = true;
    s.close();
  }
}

TcpTransport::Impl::Impl(asio::any_io_executor ex_, TransportConfig config_,
                         ReceiveHandler on_receive_)
    : ex(std::move(ex_)),
      config(std::move(config_)),
      handshake_limits(config.limits),
      keepalive_interval(resolve_keepalive(config)),
      on_receive(std::move(on_receive_)),
      acceptor(ex),
      rng(config.seed ^ (config.self.value() * 0x9e3779b97f4a7c15ull)),
      accept_backoff(ex),
      drained(ex) {
  handshake_limits.frame_bytes_max = handshake_frame_bytes_max;
  handshake_limits.segments_max = 4;
  init_event(drained);
  for (const PeerAddress& a : config.peers) {
    if (a.id != config.self && a.id != no_node) peers.emplace(a.id, std::make_unique<Peer>(ex, a));
  }
}

void TcpTransport::Impl::spawn(asio::awaitable<void> a, const char* what) {
  ++live;
  asio::co_spawn(ex, std::move(a), [this, what](std::exception_ptr e) {
    --live;
    if (e) {
      std::string text = "unknown exception";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        text = ex.what();
      } catch (...) {
      }
      CORAFT_ASSERT(false, "a transport coroutine died", what, text, config.self);
    }
    if (live == 0 && stopping) drained.cancel();
  });
}

Peer* TcpTransport::Impl::find(NodeId id) const {
  auto it = peers.find(id);
  return it == peers.end() ? nullptr : it->second.get();
}

bool TcpTransport::Impl::full(const Peer& p) const {
  return p.queue.size() >= config.send_queue_messages_max ||
         p.queued_bytes >= config.send_queue_bytes_max;
}

asio::awaitable<void> TcpTransport::Impl::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (stopping) co_return;
    if (ec) {
      ++inbound_counts.accept_errors;
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
        log(LogLevel::warn, "net: node ", config.self, ": accept failed: ", ec.message());
        co_return;
      }
      if (out_of_resources(ec)) {
        accept_backoff.expires_after(accept_backoff_delay(ec));
        co_await accept_backoff.async_wait(use_tuple);
      } else {
        log_limited(refusal_log, LogLevel::warn, "net: node ", config.self,
                    ": accept failed: ", ec.message());
      }
      continue;
    }
    if (accept_failures > 0) {
      log_limited(refusal_log, LogLevel::info, "net: node ", config.self,
                  ": accepting connections again after ", accept_failures, " failed accepts");
      accept_failures = 0;
    }
    close_on_exec(socket.native_handle());
    std::error_code ignored;
    auto remote = socket.remote_endpoint(ignored);
    std::string who = remote.address().to_string() + ":" + std::to_string(remote.port());
    ++inbound_counts.accepted;
    make_room(remote.address());
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    Inbound& in = inbound.emplace_back();
    in.stream = std::make_unique<Stream>(std::move(socket), tls.get());
    in.remote = std::move(who);
    in.source = remote.address();
    spawn(serve(std::prev(inbound.end())), "inbound connection");
  }
}

bool TcpTransport::Impl::out_of_resources(const std::error_code& ec) {
  if (ec.category() != asio::error::get_system_category()) return false;
  return ec.value() == EMFILE || ec.value() == ENFILE || ec.value() == ENOMEM ||
         ec.value() == ENOBUFS;
}

std::chrono::milliseconds TcpTransport::Impl::accept_backoff_delay(const std::error_code& ec) {
  // The pending connection stays queued, so accepting again at once fails again at once: wait,
  // longer each time, and say once per episode what is wrong.
  if (accept_failures++ == 0 && descriptors_reported) {
    log_limited(refusal_log, LogLevel::warn, "net: node ", config.self,
                ": cannot accept connections again: ", ec.message());
  } else if (accept_failures == 1) {
    descriptors_reported = true;
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    log(LogLevel::error, "net: node ", config.self, ": cannot accept connections: ", ec.message(),
        ". The descriptor limit (RLIMIT_NOFILE ", limit.rlim_cur,
        ") is too low for this node's connections: raise it well above handshakes_max (",
        config.handshakes_max, ") + inbound_connections_max (", config.inbound_connections_max,
        ") + twice the peers. Accepting is retried with a growing delay meanwhile");
  }
  auto shift = std::min<std::uint64_t>(accept_failures - 1, 7);
  return std::chrono::milliseconds(5) * (std::uint64_t{1} << shift);
}

void TcpTransport::Impl::make_room(const asio::ip::address& source) {
  // `inbound` is in order of arrival, so the first match is the oldest.
  std::size_t all = 0;
  std::size_t same = 0;
  Inbound* oldest = nullptr;
  Inbound* oldest_same = nullptr;
  for (Inbound& in : inbound) {
    if (!in.handshaking || !in.stream->is_open()) continue;
    ++all;
    if (!oldest) oldest = &in;
    if (in.source == source) {
      ++same;
      if (!oldest_same) oldest_same = &in;
    }
  }
  Inbound* victim = same >= config.handshakes_per_source_max ? oldest_same
                    : all >= config.handshakes_max           ? oldest
                                                             : nullptr;
  if (!victim) return;
  ++inbound_counts.evicted;
  log_limited(
      refusal_log, LogLevel::info, "net: node ", config.self, ": closing a connection from ",
      victim->remote, " still in its handshake to make room for a newer one (",
      same >= config.handshakes_per_source_max ? "handshakes_per_source_max " : "handshakes_max ",
      same >= config.handshakes_per_source_max ? config.handshakes_per_source_max
                                               : config.handshakes_max,
      ")");
  victim->evicted = true;
  victim->stream->close();
}

asio::awaitable<void> TcpTransport::Impl::serve(std::list<Inbound>::iterator it) {
  Inbound& in = *it;
  FrameReader reader(handshake_limits, 2 * handshake_frame_bytes_max);
  std::optional<Result<NodeId>> outcome;
  bool timed_out = false;
  {
    asio::steady_timer deadline(ex, config.inbound_handshake_timeout);
    co_await (accept_handshake(in, reader, outcome) || expire(deadline, *in.stream, timed_out));
  }
  in.handshaking = false;
  if (in.evicted) {
    // Counted and logged (within limits) by make_room.
  } else if (!stopping && (timed_out || !outcome || !*outcome)) {
    ++inbound_counts.refused;
    std::string why = timed_out  ? std::string("no handshake within inbound_handshake_timeout")
                      : !outcome ? std::string("closed during the handshake")
                                 : printable(outcome->error().message(), logged_line_text_max);
    // Anyone can connect: a refusal is worth a warning, not an error, and a limited number.
    log_limited(refusal_log, LogLevel::warn, "net: node ", config.self,
                ": refused connection from ", in.remote, ": ", why);
  } else if (!stopping && !find(**outcome)) {
    log(LogLevel::info, "net: node ", config.self, ": closing connection from node ", **outcome,
        " (", in.remote, "): it was removed as a peer during the handshake");
  } else if (!stopping) {
    ++inbound_counts.authenticated;
    in.sender = **outcome;
    supersede(in);
    reader.reset_limits(config.limits, config.receive_chunk_bytes);
    in.last_received = std::chrono::steady_clock::now();
    if (config.idle_timeout.count() > 0 || config.frame_timeout.count() > 0) {
      co_await (receive_loop(in, reader) || watch_progress(in));
    } else {
      co_await receive_loop(in, reader);
    }
  }
  in.stream->close();
  inbound.erase(it);
}

void TcpTransport::Impl::supersede(const Inbound& newest) {
  // A peer keeps one connection to this node, so an older one from the same sender is stale
  // (its end died without closing it): close it rather than let such connections pile up.
  for (Inbound& other : inbound) {
    if (&other != &newest && other.sender == newest.sender && other.stream->is_open()) {
      log_limited(inbound_log, LogLevel::info, "net: node ", config.self,
                  ": a new connection from node ", newest.sender, " replaces the one from ",
                  other.remote);
      other.stream->close();
    }
  }
}

asio::awaitable<void> TcpTransport::Impl::accept_handshake(Inbound& in, FrameReader& reader,
                                                           std::optional<Result<NodeId>>& out) {
  if (auto ec = co_await in.stream->handshake(false); ec) {
    out = Error(Errc::peer_rejected, "TLS handshake failed: " + in.stream->handshake_failure(ec));
    co_return;
  }
  auto frame = co_await read_frame(*in.stream, reader);
  if (!frame) {
    out = Error(frame.error().code, "during the handshake: " + frame.error().detail);
    co_return;
  }
  auto body = decode(*frame, handshake_limits);
  if (!body) {
    out = Error(body.error().code, "handshake frame: " + body.error().detail);
    co_return;
  }
  auto sender = check_handshake(*body);
  if (sender) {
    if (auto named = check_identity(*in.stream, *sender); !named) sender = named.error();
  }
  // A verified peer is no longer a candidate for make_room while its reply goes out.
  if (sender) in.handshaking = false;
  // A refusal tells a plaintext stranger nothing of this node's configuration (not its cluster
  // id, node id or peers): only a peer whose certificate the cluster CA signed learns why.
  std::string reason;
  if (!sender) reason = in.stream->tls() ? sender.error().detail : std::string(refusal_reason);
  HandshakeReply reply{sender.ok(),
                       protocol_version,
                       sender ? config.cluster_id : 0,
                       sender ? config.self : no_node,
                       std::move(reason),
                       sender ? config.group_id : 0};
  auto frame_out = encode(std::move(reply), config.limits);
  CORAFT_ASSERT(frame_out.ok(), "a handshake reply always fits a frame");
  auto ec = co_await in.stream->write(frame_out->buffers());
  if (sender && ec)
    sender = Error(Errc::connection_closed, "sending the handshake reply: " + ec.message());
  out = std::move(sender);
}

Result<NodeId> TcpTransport::Impl::check_handshake(const FrameBody& body) const {
  const auto* h = std::get_if<Handshake>(&body);
  if (!h) {
    return Error(Errc::protocol_error,
                 detail::concat("expected a handshake, received ", frame_kind(body)));
  }
  if (h->protocol_version != protocol_version) {
    return Error(Errc::peer_rejected, detail::concat("protocol version ", h->protocol_version,
                                                     ", this node speaks ", protocol_version));
  }
  if (h->cluster_id != config.cluster_id) {
    return Error(Errc::peer_rejected, detail::concat("cluster id ", h->cluster_id,
                                                     ", this node's is ", config.cluster_id));
  }
  if (h->group_id != config.group_id) {
    return Error(Errc::peer_rejected,
                 detail::concat("group id ", h->group_id, ", this node's is ", config.group_id));
  }
  if (!find(h->sender)) {
    return Error(Errc::peer_rejected,
                 detail::concat("unknown sender node ", h->sender, " (not a configured peer)"));
  }
  std::size_t others = 0;
  for (const Inbound& in : inbound) {
    others += in.sender != no_node && in.sender != h->sender && in.stream->is_open();
  }
  if (others >= config.inbound_connections_max) {
    return Error(Errc::overloaded, detail::concat(others,
                                                  " authenticated connections are open "
                                                  "(inbound_connections_max)"));
  }
  if (h->receiver != no_node && h->receiver != config.self) {
    return Error(Errc::peer_rejected,
                 detail::concat("addressed to node ", h->receiver, ", this is node ", config.self));
  }
  return h->sender;
}

Result<void> TcpTransport::Impl::check_identity(const Stream& s, NodeId claimed) const {
  if (!s.tls()) return {};
  std::string name = certificate_name(*config.tls, claimed);
  if (s.peer_certificate_names(name)) return {};
  return Error(
      Errc::peer_rejected,
      detail::concat("the peer's certificate does not name node ", claimed, " (expected '", name,
                     "' as a DNS subjectAltName, or as the common name of a "
                     "certificate without one)"));
}

void TcpTransport::Impl::track_frame(Inbound& in, const FrameReader& reader) {
  // Called once every complete frame was handed out: what remains is the start of the next.
  if (reader.buffered_bytes() == 0) {
    in.frame_started.reset();
    return;
  }
  if (!in.frame_started) in.frame_started = in.last_received;
  in.frame_bytes = reader.pending_frame_bytes();
}

std::optional<std::chrono::steady_clock::time_point> TcpTransport::Impl::frame_deadline(
    const Inbound& in) const {
  if (config.frame_timeout.count() <= 0 || !in.frame_started) return std::nullopt;
  auto rate = std::max<std::size_t>(config.frame_bytes_per_second_min, 1);
  auto transfer = std::chrono::milliseconds(in.frame_bytes * 1000 / rate);
  return *in.frame_started + config.frame_timeout + transfer;
}

asio::awaitable<void> TcpTransport::Impl::watch_progress(Inbound& in) {
  using clock = std::chrono::steady_clock;
  asio::steady_timer timer(ex);
  std::string why;
  while (why.empty()) {
    // A frame that starts while this sleeps is noticed within a quarter of frame_timeout.
    auto wake = clock::time_point::max();
    if (config.idle_timeout.count() > 0) wake = in.last_received + config.idle_timeout;
    if (auto frame = frame_deadline(in)) wake = std::min(wake, *frame);
    if (config.frame_timeout.count() > 0)
      wake = std::min(wake, clock::now() + config.frame_timeout / 4);
    timer.expires_at(wake);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec || stopping) co_return;  // the connection ended first
    auto now = clock::now();
    if (config.idle_timeout.count() > 0 && now - in.last_received >= config.idle_timeout) {
      why = detail::concat("nothing received for idle_timeout (", config.idle_timeout.count(),
                           " ms)");
    } else if (auto frame = frame_deadline(in); frame && now >= *frame) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - *in.frame_started);
      why = detail::concat(
          "a frame",
          in.frame_bytes ? detail::concat(" of ", in.frame_bytes, " bytes") : std::string(),
          " still incomplete after ", ms.count(), " ms (frame_timeout ",
          config.frame_timeout.count(), " ms, frame_bytes_per_second_min ",
          config.frame_bytes_per_second_min, ")");
    }
  }
  log_limited(inbound_log, LogLevel::info, "net: node ", config.self,
              ": closing connection from node ", in.sender, " (", in.remote, "): ", why);
  in.stream->close();
}

asio::awaitable<void> TcpTransport::Impl::receive_loop(Inbound& in, FrameReader& reader) {
  for (;;) {
    for (;;) {
      auto next = reader.next();
      if (!next) {
        log_limited(inbound_log, LogLevel::error, "net: node ", config.self,
                    ": closing connection from node ", in.sender, " (", in.remote,
                    "): ", printable(next.error().message(), logged_line_text_max));
        co_return;
      }
      if (!*next) break;
      in.frame_started.reset();  // a frame completed; the next one starts its own clock
      auto body = decode(**next, config.limits);
      // A keepalive only shows the peer is alive, which its arrival already recorded.
      if (body && std::holds_alternative<Keepalive>(*body)) continue;
      auto* message = body ? std::get_if<core::MessageBody>(&*body) : nullptr;
      if (!message) {
        std::string why = body ? detail::concat("unexpected ", frame_kind(*body), " frame")
                               : body.error().message();
        log_limited(inbound_log, LogLevel::error, "net: node ", config.self,
                    ": closing connection from node ", in.sender, " (", in.remote,
                    "): ", printable(why, logged_line_text_max));
        co_return;
      }
      on_receive(core::Message{in.sender, config.self, std::move(*message)});
      // The handler may have stopped the transport or removed the sender.
      if (stopping || !in.stream->is_open()) co_return;
    }
    track_frame(in, reader);
    auto [ec, n] = co_await in.stream->read_some(reader.prepare());
    if (ec) {
      if (!stopping) {
        log_limited(inbound_log, LogLevel::info, "net: node ", config.self,
                    ": connection from node ", in.sender, " closed: ",
                    ec == asio::error::eof ? std::string("end of stream") : ec.message());
      }
      co_return;
    }
    in.last_received = std::chrono::steady_clock::now();
    reader.commit(n);
  }
}

// ---- TcpTransport

TcpTransport::TcpTransport(asio::any_io_executor ex, TransportConfig config,
                           ReceiveHandler on_receive)
    : impl_(std::make_unique<Impl>(std::move(ex), std::move(config), std::move(on_receive))) {}

TcpTransport::TcpTransport(asio::io_context& io, TransportConfig config, ReceiveHandler on_receive)
    : TcpTransport(io.get_executor(), std::move(config), std::move(on_receive)) {}

TcpTransport::~TcpTransport() {
  CORAFT_REQUIRE(!impl_->started || (impl_->stopping && impl_->live == 0),
                 "destroy a TcpTransport only after stop() and once its executor ran its "
                 "coroutines out (stopped() is true)",
                 impl_->live);
}

Result<void> TcpTransport::start() {
  CORAFT_REQUIRE(!impl_->started, "start() called twice");
  Impl& m = *impl_;
  if (auto ok = check_keepalive(m.config, m.keepalive_interval); !ok) return ok.error();
  if (m.config.tls) {
    auto ctx = make_tls(*m.config.tls);
    if (!ctx) return ctx.error();
    m.tls = std::move(*ctx);
    // A peer would refuse this node's certificate: say so now rather than on every connection.
    std::string own = certificate_name(*m.config.tls, m.config.self);
    if (!certificate_names(*m.tls, own)) {
      log(LogLevel::error, "net: node ", m.config.self, ": this node's certificate '",
          m.config.tls->cert_file, "' does not name it (it needs the DNS subjectAltName '", own,
          "'); peers will refuse it");
    }
  }
  std::error_code ec;
  auto address = asio::ip::make_address(m.config.listen_host, ec);
  asio::ip::tcp::endpoint endpoint(address, m.config.listen_port);
  if (!ec) m.acceptor.open(endpoint.protocol(), ec);
  if (!ec) close_on_exec(m.acceptor.native_handle());
  if (!ec) m.acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) m.acceptor.bind(endpoint, ec);
  if (!ec) m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::error_code ignored;
    m.acceptor.close(ignored);
    return Error(Errc::invalid_argument,
                 detail::concat("cannot listen on ", m.config.listen_host, ":",
                                m.config.listen_port, ": ", ec.message()));
  }
  m.started = true;
  m.spawn(m.accept_loop(), "acceptor");
  for (auto& [id, peer] : m.peers) m.start_dialling(*peer);
  return {};
}

std::uint16_t TcpTransport::local_port() const {
  std::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

Result<void> TcpTransport::send(core::Message m) {
  Impl& t = *impl_;
  if (t.stopping) return Error(Errc::shutting_down, "the transport is stopped");
  Peer* p = t.find(m.to);
  if (!p)
    return Error(Errc::invalid_argument,
                 detail::concat("node ", m.to, " is not a configured peer"));
  if (t.full(*p)) {
    return Error(Errc::overloaded,
                 detail::concat("send queue to node ", m.to, " holds ", p->queue.size(),
                                " frames and ", p->queued_bytes, " bytes (send_queue_messages_max ",
                                t.config.send_queue_messages_max, ", send_queue_bytes_max ",
                                t.config.send_queue_bytes_max, ")"));
  }
  auto frame = encode(std::move(m.body), t.config.limits);
  if (!frame) return frame.error();
  p->queued_bytes += frame->size_bytes();
  p->queue.push_back(std::move(*frame));
  if (p->queue.size() == 1) p->wake.cancel();
  return {};
}

asio::awaitable<void> TcpTransport::writable(NodeId peer) {
  // Looked up again after every wait: the peer may have been removed meanwhile.
  for (;;) {
    Peer* p = impl_->find(peer);
    if (!p || impl_->stopping || !impl_->full(*p)) co_return;
    co_await p->room.async_wait(use_tuple);
  }
}

void TcpTransport::stop() {
  Impl& t = *impl_;
  if (t.stopping) return;
  t.stopping = true;
  std::error_code ignored;
  t.acceptor.close(ignored);
  t.accept_backoff.cancel();
  for (auto& [id, p] : t.peers) {
    if (p->stream) p->stream->close();
    p->wake.cancel();
    p->room.cancel();
    p->backoff.cancel();
  }
  for (Inbound& in : t.inbound) in.stream->close();
  if (t.live == 0) t.drained.cancel();
}

asio::awaitable<void> TcpTransport::shutdown() {
  stop();
  while (impl_->live > 0) co_await impl_->drained.async_wait(use_tuple);
}

bool TcpTransport::stopped() const {
  return impl_->stopping && impl_->live == 0;
}

void TcpTransport::set_peer_address(NodeId peer, std::string host, std::uint16_t port) {
  Peer* p = impl_->find(peer);
  CORAFT_REQUIRE(p != nullptr, "set_peer_address for a node that is not a peer", peer);
  p->address.host = std::move(host);
  p->address.port = port;
}

void TcpTransport::add_peer(PeerAddress peer) {
  Impl& t = *impl_;
  CORAFT_REQUIRE(peer.id != no_node && peer.id != t.config.self,
                 "add_peer needs the id of another node", peer.id, t.config.self);
  if (Peer* known = t.find(peer.id)) {
    known->address = std::move(peer);
    return;
  }
  NodeId id = peer.id;
  auto& added = t.peers.emplace(id, std::make_unique<Peer>(t.ex, std::move(peer))).first->second;
  if (t.started && !t.stopping) t.start_dialling(*added);
  log(LogLevel::info, "net: node ", t.config.self, ": node ", id, " is a peer now");
}

void TcpTransport::remove_peer(NodeId peer) {
  Impl& t = *impl_;
  auto it = t.peers.find(peer);
  if (it == t.peers.end()) return;
  std::unique_ptr<Peer> p = std::move(it->second);
  t.peers.erase(it);
  for (Inbound& in : t.inbound) {
    if (in.sender == peer) in.stream->close();
  }
  log(LogLevel::info, "net: node ", t.config.self, ": node ", peer, " is no longer a peer (",
      p->queue.size(), " queued messages dropped)");
  p->room.cancel();  // writable() finds the peer gone and returns
  if (!p->dialling) return;
  // Its dial_loop still refers to it (and a write may still refer to its queued frames): wake
  // the loop to end, and let it destroy the peer, queue and all, as it does.
  p->removed = true;
  if (p->stream) p->stream->close();
  p->wake.cancel();
  p->backoff.cancel();
  t.retired.push_back(std::move(p));
}

TcpTransport::PeerStats TcpTransport::peer_stats(NodeId peer) const {
  const Peer* p = impl_->find(peer);
  CORAFT_REQUIRE(p != nullptr, "peer_stats for a node that is not a peer", peer);
  return {p->connected, p->queue.size(), p->queued_bytes,
          p->connects,  p->frames_sent,  p->keepalives_sent};
}

TcpTransport::InboundStats TcpTransport::inbound_stats() const {
  InboundStats s = impl_->inbound_counts;
  s.handshaking = 0;
  for (const Inbound& in : impl_->inbound) s.handshaking += in.handshaking && in.stream->is_open();
  s.lines_suppressed =
      impl_->refusal_log.suppressed_total() + impl_->inbound_log.suppressed_total();
  return s;
}

std::size_t TcpTransport::inbound_connections() const {
  std::size_t n = 0;
  for (const Inbound& in : impl_->inbound) n += in.sender != no_node && in.stream->is_open();
  return n;
}

}  // namespace coraft::net
