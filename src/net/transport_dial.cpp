// TcpTransport: the outbound connection to each peer, its handshake, reconnects and writes.
#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/use_awaitable.hpp>

#include <coraft/log.hpp>

#include "net/backoff.hpp"
#include "net/transport_impl.hpp"

namespace coraft::net {
namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using namespace asio::experimental::awaitable_operators;

}  // namespace

void TcpTransport::Impl::start_dialling(Peer& p) {
  p.dialling = true;
  spawn(dial_loop(p), "dialler");
}

asio::awaitable<void> TcpTransport::Impl::dial_loop(Peer& p) {
  unsigned attempt = 0;
  // The current outage: failed attempts, when it began, and the kinds of failure logged.
  std::uint64_t failures = 0;
  std::chrono::steady_clock::time_point outage_start{};
  std::vector<std::error_code> reported;
  while (!stopping && !p.removed) {
    auto established = co_await establish(p);
    if (established) {
      attempt = 0;
      p.connected = true;
      ++p.connects;
      std::string after;
      if (failures > 0) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - outage_start);
        after = detail::concat(" after ", failures, " failed attempt", failures == 1 ? "" : "s",
                               " over ", ms.count(), " ms");
      }
      failures = 0;
      reported.clear();
      log(LogLevel::info, "net: node ", config.self, ": connected to node ", p.address.id, " at ",
          p.address.host, ":", p.address.port, p.stream->tls() ? " (TLS)" : "", after);
      co_await (write_loop(p) || watch_close(p));
      p.connected = false;
    } else if (!stopping && !p.removed) {
      if (failures++ == 0) outage_start = std::chrono::steady_clock::now();
      report_dial_failure(p, established.error(), failures, reported);
    }
    if (p.stream) p.stream->close();
    if (stopping || p.removed) break;
    p.backoff.expires_after(
        backoff_delay(attempt++, config.reconnect_delay_min, config.reconnect_delay_max, rng));
    co_await p.backoff.async_wait(use_tuple);
  }
  p.stream.reset();
  p.dialling = false;
  if (p.removed) {
    // The last use of `p`: nothing else refers to a removed peer.
    retired.remove_if([&](const std::unique_ptr<Peer>& r) { return r.get() == &p; });
  }
}

void TcpTransport::Impl::report_dial_failure(const Peer& p, const Error& e, std::uint64_t failures,
                                             std::vector<std::error_code>& reported) {
  // Each kind of failure is logged once per outage (a refused handshake, a configuration error,
  // as an error; a peer that is merely unreachable as a warning); repeats go to debug, and the
  // connection, when it comes, says how many attempts failed.
  bool refused = e.is(Errc::peer_rejected) || e.is(Errc::protocol_error);
  bool first = std::find(reported.begin(), reported.end(), e.code) == reported.end();
  LogLevel level = !first ? LogLevel::debug : refused ? LogLevel::error : LogLevel::warn;
  if (first) reported.push_back(e.code);
  log(level, "net: node ", config.self, ": cannot connect to node ", p.address.id, " at ",
      p.address.host, ":", p.address.port, ": ", printable(e.message(), logged_line_text_max),
      first ? detail::concat(" (attempt ", failures,
                             "; further failures like it are counted, not "
                             "logged, until it connects)")
            : std::string());
}

asio::awaitable<Result<void>> TcpTransport::Impl::establish(Peer& p) {
  p.stream = std::make_unique<Stream>(ex, tls.get());
  std::optional<Result<void>> outcome;
  bool timed_out = false;
  {
    asio::steady_timer deadline(ex, config.handshake_timeout);
    co_await (dial(p, outcome) || expire(deadline, *p.stream, timed_out));
  }
  if (timed_out || !outcome) {
    co_return Error(Errc::timeout,
                    "connecting and the handshake took longer than handshake_timeout");
  }
  co_return std::move(*outcome);
}

asio::awaitable<void> TcpTransport::Impl::dial(Peer& p, std::optional<Result<void>>& out) {
  std::vector<asio::ip::tcp::endpoint> endpoints;
  std::error_code ec;
  auto address = asio::ip::make_address(p.address.host, ec);
  if (!ec) {
    endpoints.emplace_back(address, p.address.port);
  } else {
    asio::ip::tcp::resolver resolver(ex);
    auto [rec, results] =
        co_await resolver.async_resolve(p.address.host, std::to_string(p.address.port), use_tuple);
    if (rec) {
      out = Error(Errc::connection_closed, "cannot resolve the host: " + rec.message());
      co_return;
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  if (auto cec = co_await p.stream->connect(endpoints); cec) {
    out = Error(Errc::connection_closed, cec.message());
    co_return;
  }
  if (auto hec = co_await p.stream->handshake(true); hec) {
    out = Error(Errc::peer_rejected, "TLS handshake failed: " + p.stream->handshake_failure(hec));
    co_return;
  }
  if (auto named = check_identity(*p.stream, p.address.id); !named) {
    out = named.error();
    co_return;
  }
  auto hello = encode(
      Handshake{protocol_version, config.cluster_id, config.self, p.address.id, config.group_id},
      config.limits);
  CORAFT_ASSERT(hello.ok(), "a handshake always fits a frame");
  if (auto wec = co_await p.stream->write(hello->buffers()); wec) {
    out = Error(Errc::connection_closed, "sending the handshake: " + wec.message());
    co_return;
  }
  FrameReader reader(handshake_limits, 2 * handshake_frame_bytes_max);
  auto frame = co_await read_frame(*p.stream, reader);
  if (!frame) {
    // With TLS 1.3 a refused certificate shows up here, as the peer closing the connection.
    out = Error(Errc::peer_rejected, "no handshake reply: " + frame.error().detail);
    co_return;
  }
  if (reader.buffered_bytes() > 0) {
    // This connection only sends: a peer has nothing to say on it after its reply.
    out = Error(Errc::protocol_error,
                detail::concat("the peer sent ", reader.buffered_bytes(),
                               " bytes after its handshake reply on a send-only connection"));
    co_return;
  }
  auto body = decode(*frame, handshake_limits);
  out = body ? check_reply(p, *body) : Result<void>(body.error());
}

Result<void> TcpTransport::Impl::check_reply(const Peer& p, const FrameBody& body) const {
  const auto* r = std::get_if<HandshakeReply>(&body);
  if (!r) {
    return Error(Errc::protocol_error,
                 detail::concat("expected a handshake reply, received ", frame_kind(body)));
  }
  if (!r->accepted)
    return Error(Errc::peer_rejected, "the peer refused the handshake: " + printable(r->reason));
  if (r->protocol_version != protocol_version || r->cluster_id != config.cluster_id ||
      r->group_id != config.group_id || r->node != p.address.id) {
    return Error(
        Errc::peer_rejected,
        detail::concat("the peer is node ", r->node, " of cluster ", r->cluster_id, " group ",
                       r->group_id, " speaking protocol version ", r->protocol_version,
                       "; expected node ", p.address.id, " of cluster ", config.cluster_id,
                       " group ", config.group_id, " speaking version ", protocol_version));
  }
  return {};
}

asio::awaitable<bool> TcpTransport::Impl::wait_for_frames(
    Peer& p, std::chrono::steady_clock::time_point& last_sent) {
  Stream& s = *p.stream;
  std::optional<OutFrame> keepalive;
  while (p.queue.empty() && !stopping && s.is_open()) {
    auto now = std::chrono::steady_clock::now();
    if (keepalive_interval.count() > 0 && now - last_sent >= keepalive_interval) {
      if (!keepalive) {
        auto frame = encode(Keepalive{}, config.limits);
        CORAFT_ASSERT(frame.ok(), "a keepalive always fits a frame");
        keepalive.emplace(std::move(*frame));
      }
      auto ec = co_await s.write(keepalive->buffers());
      if (ec) {
        if (!stopping) {
          log(LogLevel::warn, "net: node ", config.self, ": sending a keepalive to node ",
              p.address.id, " failed: ", ec.message());
        }
        co_return false;
      }
      ++p.keepalives_sent;
      last_sent = std::chrono::steady_clock::now();
      continue;
    }
    // `wake` is an event that send() cancels; its expiry, when set, is the next keepalive.
    p.wake.expires_at(keepalive_interval.count() > 0 ? last_sent + keepalive_interval
                                                     : asio::steady_timer::time_point::max());
    co_await p.wake.async_wait(use_tuple);
  }
  co_return true;
}

asio::awaitable<void> TcpTransport::Impl::write_loop(Peer& p) {
  Stream& s = *p.stream;
  std::vector<asio::const_buffer> buffers;
  // The handshake was the last write.
  auto last_sent = std::chrono::steady_clock::now();
  for (;;) {
    bool alive = co_await wait_for_frames(p, last_sent);
    if (!alive || stopping || !s.is_open()) break;
    // Gather the queued frames into one write, up to its byte and buffer limits.
    buffers.clear();
    std::size_t frames = 0;
    std::size_t bytes = 0;
    for (const OutFrame& f : p.queue) {
      bool over = bytes + f.size_bytes() > config.write_batch_bytes_max ||
                  buffers.size() + f.buffers().size() > write_buffers_max;
      if (frames > 0 && over) break;
      buffers.insert(buffers.end(), f.buffers().begin(), f.buffers().end());
      bytes += f.size_bytes();
      ++frames;
    }
    if (auto ec = co_await s.write(buffers); ec) {
      // The frames stay queued and go out again, whole, on the next connection.
      if (!stopping) {
        log(LogLevel::warn, "net: node ", config.self, ": writing to node ", p.address.id,
            " failed: ", ec.message());
      }
      break;
    }
    for (std::size_t i = 0; i < frames; ++i) {
      p.queued_bytes -= p.queue.front().size_bytes();
      p.queue.pop_front();
    }
    p.frames_sent += frames;
    last_sent = std::chrono::steady_clock::now();
    if (p.queue.size() <= config.send_queue_messages_max / 2 &&
        p.queued_bytes <= config.send_queue_bytes_max / 2) {
      p.room.cancel();
    }
  }
  // Closing ends watch_close's read, whatever the stream's support for cancellation.
  s.close();
}

asio::awaitable<void> TcpTransport::Impl::watch_close(Peer& p) {
  Stream& s = *p.stream;
  std::byte scratch[64];
  auto [ec, n] = co_await s.read_some(scratch);
  if (!stopping && !ec) {
    log(LogLevel::error, "net: node ", config.self, ": node ", p.address.id,
        " sent data on a send-only connection; closing it");
  } else if (!stopping && s.is_open()) {
    log(LogLevel::info, "net: node ", config.self, ": connection to node ", p.address.id,
        " closed: ", ec == asio::error::eof ? std::string("end of stream") : ec.message());
  }
  s.close();
  p.wake.cancel();  // ends write_loop's wait
}

}  // namespace coraft::net
