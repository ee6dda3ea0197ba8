#include "server.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <list>
#include <memory>
#include <optional>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include <coraft/log.hpp>
#include <coraft/node.hpp>
#include <coraft/sessions.hpp>

#include "machine.hpp"
#include "protocol.hpp"

namespace counter {

bool parse_host_port(const std::string& text, HostPort& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port > 65535) return false;
  } catch (const std::exception&) {
    return false;
  }
  out.host = text.substr(0, colon);
  out.port = static_cast<std::uint16_t>(port);
  return true;
}

bool parse_id_address(const std::string& text, std::uint64_t& id, std::string& address) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  try {
    std::size_t used = 0;
    id = std::stoull(text.substr(0, eq), &used);
    if (used != eq || id == 0) return false;
  } catch (const std::exception&) {
    return false;
  }
  address = text.substr(eq + 1);
  HostPort hp;
  return parse_host_port(address, hp);
}

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using coraft::Bytes;
using coraft::Errc;
using coraft::Error;
using coraft::NodeId;

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

Reply request_error(std::uint64_t id, RequestErrc code, std::string message) {
  Reply r;
  r.id = id;
  r.domain = Domain::request;
  r.code = static_cast<std::uint16_t>(code);
  r.definite = true;
  r.message = std::move(message);
  return r;
}

nlohmann::json ids_json(const std::vector<NodeId>& ids) {
  auto out = nlohmann::json::array();
  for (NodeId id : ids) out.push_back(id.value());
  return out;
}

nlohmann::json configuration_json(const coraft::Configuration& c) {
  nlohmann::json j;
  j["voters"] = ids_json(c.voters);
  j["learners"] = ids_json(c.learners);
  if (c.joint()) j["outgoing_voters"] = ids_json(c.outgoing_voters);
  auto addresses = nlohmann::json::object();
  for (const auto& a : c.addresses) addresses[std::to_string(a.id.value())] = a.address;
  j["addresses"] = addresses;
  return j;
}

class Server {
 public:
  Server(asio::io_context& io, const ServeOptions& o)
      : io_(io), o_(o), machine_(session_limits(o)) {}

  static coraft::SessionLimits session_limits(const ServeOptions& o) {
    coraft::SessionLimits l;
    l.sessions_max = o.sessions_max;
    l.session_timeout_ms = o.session_timeout_ms;
    return l;
  }

  // Everything a server does, from start to a graceful stop.
  awaitable<void> run() {
    coraft::NodeConfig config;
    if (auto c = make_config(); !c) {
      fail(2, c.error().message());
      co_return;
    } else {
      config = std::move(*c);
    }
    if (auto d = check_data_dir(config.data_dir); !d) {
      fail(1, d.error().message());
      co_return;
    }
    if (o_.bootstrap) {
      if (auto b = bootstrap_if_empty(config); !b) {
        fail(1, b.error().message());
        co_return;
      }
    }
    asio::any_io_executor ex = io_.get_executor();
    auto started = co_await coraft::Node::start(ex, std::move(config), machine_, use_awaitable);
    if (!started) {
      fail(1, started.error().message());
      co_return;
    }
    node_ = std::move(*started);
    HostPort client;
    (void)parse_host_port(o_.client_listen, client);
    std::error_code ec;
    if (auto a = listen(client, ec); !a) {
      (void)co_await node_->stop(use_awaitable);
      fail(1, "cannot listen for clients on " + o_.client_listen + ": " + ec.message());
      co_return;
    } else {
      clients_ = std::move(a);
    }
    if (!o_.metrics_listen.empty()) {
      HostPort m;
      (void)parse_host_port(o_.metrics_listen, m);
      metrics_ = listen(m, ec);
      if (!metrics_) {
        (void)co_await node_->stop(use_awaitable);
        fail(1, "cannot listen for metrics on " + o_.metrics_listen + ": " + ec.message());
        co_return;
      }
      asio::co_spawn(io_, serve_metrics(), asio::detached);
    }
    std::printf("coraft-counter: server %llu: clients on %s:%u, peers on port %u\n",
                static_cast<unsigned long long>(o_.id), client.host.c_str(),
                clients_->local_endpoint().port(), node_->listen_port());
    std::fflush(stdout);
    asio::co_spawn(io_, accept_clients(), asio::detached);

    asio::signal_set signals(io_, SIGTERM, SIGINT);
    co_await signals.async_wait(use_awaitable);
    coraft::log(coraft::LogLevel::info, "counter: stopping on a signal");
    stopping_ = true;
    clients_->close(ec);
    if (metrics_) metrics_->close(ec);
    // Pending requests fail with shutting_down or outcome_unknown, and are answered so before
    // the connections close (for at most stop_answer_wait).
    (void)co_await node_->stop(use_awaitable);
    asio::steady_timer pause(io_);
    const auto give_up = std::chrono::steady_clock::now() + stop_answer_wait;
    while (in_flight_ > 0 && std::chrono::steady_clock::now() < give_up) {
      pause.expires_after(std::chrono::milliseconds(5));
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    for (auto& s : connections_) s->close(ec);
    node_.reset();
  }

  [[nodiscard]] int status() const noexcept { return status_; }

 private:
  void fail(int status, const std::string& message) {
    std::fprintf(stderr, "coraft-counter serve: %s\n", message.c_str());
    status_ = status;
  }

  coraft::Result<coraft::NodeConfig> make_config() {
    coraft::NodeConfig c;
    c.id = NodeId(o_.id);
    c.cluster_id = o_.cluster_id;
    c.data_dir = o_.data_dir;
    HostPort listen;
    if (!parse_host_port(o_.peer_listen, listen))
      return Error(Errc::invalid_argument, "--peer-listen: not host:port: " + o_.peer_listen);
    c.listen_host = listen.host;
    c.listen_port = listen.port;
    if (!o_.peer_advertise.empty()) {
      HostPort advertise;
      if (!parse_host_port(o_.peer_advertise, advertise) || advertise.port == 0)
        return Error(Errc::invalid_argument,
                     "--peer-advertise: not host:port: " + o_.peer_advertise);
      c.advertise_host = advertise.host;
      c.advertise_port = advertise.port;
    }
    HostPort client;
    if (!parse_host_port(o_.client_listen, client))
      return Error(Errc::invalid_argument, "--client-listen: not host:port: " + o_.client_listen);
    client_addresses_[o_.id] = o_.client_listen;
    for (const std::string& p : o_.peers) {
      std::uint64_t id = 0;
      std::string address;
      HostPort hp;
      if (!parse_id_address(p, id, address) || !parse_host_port(address, hp))
        return Error(Errc::invalid_argument, "--peer: not ID=host:port: " + p);
      c.peers.push_back(coraft::ServerAddress{NodeId(id), hp.host, hp.port});
    }
    for (const std::string& p : o_.peer_clients) {
      std::uint64_t id = 0;
      std::string address;
      if (!parse_id_address(p, id, address))
        return Error(Errc::invalid_argument, "--peer-client: not ID=host:port: " + p);
      client_addresses_[id] = address;
    }
    if (!o_.tls_ca.empty() || !o_.tls_cert.empty() || !o_.tls_key.empty()) {
      c.tls = coraft::NodeTls{o_.tls_ca, o_.tls_cert, o_.tls_key, o_.tls_cluster_name};
    }
    c.tick_interval = std::chrono::milliseconds(o_.tick_ms);
    c.election_ticks = o_.election_ticks;
    c.heartbeat_ticks = o_.heartbeat_ticks;
    c.snapshot_threshold_entries = o_.snapshot_threshold_entries;
    c.pending_proposals_max = o_.pending_proposals_max;
    if (auto v = c.validate(); !v) return v.error();
    return c;
  }

  // A data directory must be missing or empty (a new server), or hold a server's state (its
  // identity file): anything else is someone else's directory, and is left alone.
  static coraft::Result<void> check_data_dir(const std::string& dir) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) return {};
    if (!std::filesystem::is_directory(dir, ec))
      return Error(Errc::invalid_argument, "--data " + dir + " is not a directory");
    if (std::filesystem::is_empty(dir, ec) || std::filesystem::exists(dir + "/identity", ec))
      return {};
    return Error(
        Errc::invalid_argument,
        "--data " + dir + " holds files that are not a server's state; refusing to use it");
  }

  // Initialises the data directory for a new cluster of this server and its peers, unless it
  // already holds a server's state (a restart with the same command line).
  coraft::Result<void> bootstrap_if_empty(const coraft::NodeConfig& c) {
    std::error_code ec;
    if (std::filesystem::exists(c.data_dir, ec) && !std::filesystem::is_empty(c.data_dir, ec))
      return {};
    std::vector<NodeId> voters{c.id};
    for (const auto& p : c.peers) voters.push_back(p.id);
    auto conf = coraft::Configuration::make(voters);
    if (!conf) return conf.error();
    return coraft::bootstrap(c.data_dir, c.cluster_id, c.id, *conf);
  }

  std::optional<tcp::acceptor> listen(const HostPort& at, std::error_code& ec) {
    tcp::acceptor a(io_);
    const auto address = asio::ip::make_address(at.host, ec);
    if (ec) return std::nullopt;
    const tcp::endpoint ep(address, at.port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return std::nullopt;
    return a;
  }

  awaitable<void> accept_clients() {
    while (!stopping_) {
      std::error_code ec;
      auto socket = co_await clients_->async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (stopping_) co_return;
        co_await accept_pause();  // out of descriptors, say: do not spin
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      if (connections_.size() >= o_.client_connections_max) {
        asio::co_spawn(io_, refuse(s), asio::detached);
        continue;
      }
      connections_.push_back(s);
      auto it = std::prev(connections_.end());
      asio::co_spawn(io_, serve_client(s),
                     [this, it](std::exception_ptr) { connections_.erase(it); });
    }
  }

  awaitable<void> accept_pause() {
    asio::steady_timer t(io_, accept_retry_delay);
    std::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  awaitable<void> refuse(std::shared_ptr<tcp::socket> s) {
    Reply refusal = request_error(0, RequestErrc::connections_full,
                                  "the server holds client_connections_max connections");
    refusal.retryable = true;  // later, or at another server
    const auto frame = encode(refusal);
    std::error_code ec;
    co_await asio::async_write(*s, asio::buffer(frame), asio::redirect_error(use_awaitable, ec));
    s->close(ec);
  }

  // Closes `s` unless told otherwise every client_idle_timeout.
  static void watch_idle(const std::shared_ptr<asio::steady_timer>& idle,
                         const std::shared_ptr<tcp::socket>& s) {
    idle->expires_after(client_idle_timeout);
    idle->async_wait([s](std::error_code ec) {
      if (ec) return;  // restarted or cancelled
      std::error_code ignored;
      s->close(ignored);
    });
  }

  awaitable<void> serve_client(std::shared_ptr<tcp::socket> s) {
    FrameAssembler frame(request_frame_bytes_max);
    auto idle = std::make_shared<asio::steady_timer>(io_);
    while (!stopping_) {
      watch_idle(idle, s);
      while (!frame.complete()) {
        auto want = frame.want();
        std::error_code ec;
        co_await asio::async_read(*s, asio::buffer(want.data(), want.size()),
                                  asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;
        if (auto f = frame.filled(); !f) {
          const Reply refusal = request_error(0, RequestErrc::malformed, f.error().message());
          co_await send(*s, refusal);
          co_return;
        }
      }
      auto request = decode_request(frame.frame());
      frame.reset();
      if (!request) {
        const Reply refusal = request_error(0, RequestErrc::malformed, request.error().message());
        co_await send(*s, refusal);
        co_return;
      }
      idle->cancel();  // a request in progress is not idleness
      ++in_flight_;
      Reply reply = co_await handle(*request);
      reply.id = request->id;
      const bool sent = co_await send(*s, reply);
      --in_flight_;
      if (!sent) co_return;
    }
  }

  awaitable<bool> send(tcp::socket& s, const Reply& r) {
    const auto frame = encode(r);
    std::error_code ec;
    co_await asio::async_write(s, asio::buffer(frame), asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  Reply node_error(std::uint64_t id, Error e) {
    if (e.is(Errc::not_leader) && e.leader_hint.value() != 0) {
      auto it = client_addresses_.find(e.leader_hint.value());
      e.leader_address = it == client_addresses_.end() ? std::string() : it->second;
    } else {
      e.leader_address.clear();
    }
    return error_reply(id, e);
  }

  // The entry was applied but its answer cannot be read: whether it did what was asked is
  // unknown to the client.
  static Reply unreadable(std::uint64_t id, std::string why) {
    Reply r = request_error(id, RequestErrc::bad_reply, "the state machine's answer: " + why);
    r.definite = false;
    return r;
  }

  // The reply to a proposal of `envelope`, from the state machine's answer.
  awaitable<Reply> propose(const Request& rq, const coraft::SessionEnvelope& envelope) {
    Bytes entry = coraft::encode_envelope(envelope);
    auto applied = co_await node_->propose(std::move(entry), use_awaitable);
    if (!applied) co_return node_error(rq.id, applied.error());
    auto answer = decode_applied(applied->reply);
    if (!answer) co_return unreadable(rq.id, answer.error().message());
    Reply r;
    r.index = applied->index.value();
    switch (answer->status) {
      case AppliedReply::Status::ok: break;
      case AppliedReply::Status::refused: {
        r.domain = Domain::session;
        r.code = static_cast<std::uint16_t>(answer->session_error);
        // reply_discarded: the command took effect once, its reply is gone.
        r.definite = answer->session_error != coraft::SessionErrc::reply_discarded;
        r.retryable = answer->session_error == coraft::SessionErrc::window_exceeded;
        r.message = coraft::make_error_code(answer->session_error).message();
        co_return r;
      }
      case AppliedReply::Status::bad_command:
        co_return request_error(rq.id, RequestErrc::bad_argument, "not an amount");
    }
    if (envelope.kind == coraft::EnvelopeKind::close_session) co_return r;
    const auto v = body_u64(answer->body);
    if (!v) co_return unreadable(rq.id, "the answer is not 8 bytes");
    if (envelope.kind == coraft::EnvelopeKind::register_session) {
      r.session = *v;
    } else {
      r.value = static_cast<std::int64_t>(*v);
    }
    co_return r;
  }

  awaitable<Reply> handle(const Request& rq) {
    coraft::SessionEnvelope e;
    e.time_ms = now_ms();
    switch (rq.op) {
      case Op::register_session:
        e.kind = coraft::EnvelopeKind::register_session;
        co_return co_await propose(rq, e);
      case Op::close_session:
        e.kind = coraft::EnvelopeKind::close_session;
        e.session = coraft::SessionId(rq.session);
        co_return co_await propose(rq, e);
      case Op::incr:
        if (rq.session == 0 || rq.seq == 0 || rq.first_unacked > rq.seq)
          co_return request_error(rq.id, RequestErrc::bad_argument,
                                  "incr needs a session, seq >= 1 and first_unacked <= seq");
        e.kind = coraft::EnvelopeKind::command;
        e.session = coraft::SessionId(rq.session);
        e.seq = rq.seq;
        e.first_unacked = rq.first_unacked;
        e.payload = encode_amount(rq.amount);
        co_return co_await propose(rq, e);
      case Op::get: {
        Reply r;
        if (!rq.stale) {
          auto barrier = co_await node_->read_barrier(use_awaitable);
          if (!barrier) co_return node_error(rq.id, barrier.error());
          r.index = barrier->value();  // the value read reflects at least this index
        }
        r.value = machine_.value();
        co_return r;
      }
      case Op::status: co_return co_await status(rq);
      case Op::members: {
        auto st = co_await node_->status(use_awaitable);
        if (!st) co_return node_error(rq.id, st.error());
        Reply r;
        r.text = configuration_json(st->configuration).dump();
        co_return r;
      }
      case Op::add_voter:
      case Op::add_learner: {
        HostPort hp;
        if (rq.target == 0 || !parse_host_port(rq.address, hp))
          co_return request_error(rq.id, RequestErrc::bad_argument,
                                  "a new member needs an id and a peer address host:port");
        coraft::ServerAddress server{NodeId(rq.target), hp.host, hp.port};
        coraft::Result<coraft::Configuration> changed = Error(Errc::invalid_argument, "");
        if (rq.op == Op::add_voter) {
          changed = co_await node_->add_voter(server, use_awaitable);
        } else {
          changed = co_await node_->add_learner(server, rq.promote, use_awaitable);
        }
        co_return membership_reply(rq, changed);
      }
      case Op::remove_server: {
        if (rq.target == 0) co_return request_error(rq.id, RequestErrc::bad_argument, "no id");
        auto changed = co_await node_->remove_server(NodeId(rq.target), use_awaitable);
        co_return membership_reply(rq, changed);
      }
      case Op::transfer: {
        std::optional<NodeId> target;
        if (rq.target != 0) target = NodeId(rq.target);
        auto moved = co_await node_->transfer_leadership(target, use_awaitable);
        if (!moved) co_return node_error(rq.id, moved.error());
        Reply r;
        r.leader = moved->value();
        auto it = client_addresses_.find(r.leader);
        if (it != client_addresses_.end()) r.leader_address = it->second;
        co_return r;
      }
    }
    co_return request_error(rq.id, RequestErrc::malformed, "unknown operation");
  }

  Reply membership_reply(const Request& rq, const coraft::Result<coraft::Configuration>& changed) {
    if (!changed) return node_error(rq.id, changed.error());
    Reply r;
    r.text = configuration_json(*changed).dump();
    return r;
  }

  awaitable<Reply> status(const Request& rq) {
    auto st = co_await node_->status(use_awaitable);
    if (!st) co_return node_error(rq.id, st.error());
    nlohmann::json j;
    j["id"] = st->id.value();
    j["role"] = coraft::to_string(st->role);
    j["term"] = st->term.value();
    j["leader"] = st->leader.value();
    auto it = client_addresses_.find(st->leader.value());
    j["leader_client_address"] = it == client_addresses_.end() ? "" : it->second;
    j["commit"] = st->commit.value();
    j["applied"] = st->applied.value();
    j["last_log_index"] = st->last_log_index.value();
    j["snapshot_index"] = st->snapshot_index.value();
    j["value"] = machine_.value();
    j["configuration"] = configuration_json(st->configuration);
    auto peers = nlohmann::json::array();
    for (const auto& p : st->peers) {
      nlohmann::json pj;
      pj["id"] = p.id.value();
      pj["address"] = p.address;
      pj["voter"] = p.voter;
      pj["match"] = p.match.value();
      pj["next"] = p.next.value();
      pj["replication"] = p.replication;
      if (p.last_contact) pj["last_contact_ms"] = p.last_contact->count();
      peers.push_back(pj);
    }
    j["peers"] = peers;
    if (!st->failure.empty()) j["failure"] = st->failure;
    Reply r;
    r.value = machine_.value();
    r.leader = st->leader.value();
    r.index = st->applied.value();
    r.text = j.dump();
    co_return r;
  }

  // A minimal HTTP endpoint: any GET answers with the node's metrics in Prometheus text. Each
  // connection has metrics_read_timeout to send its request.
  awaitable<void> serve_metrics() {
    while (!stopping_) {
      std::error_code ec;
      auto socket = co_await metrics_->async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (stopping_) co_return;
        co_await accept_pause();
        continue;
      }
      asio::co_spawn(io_, answer_metrics(std::make_shared<tcp::socket>(std::move(socket))),
                     asio::detached);
    }
  }

  awaitable<void> answer_metrics(std::shared_ptr<tcp::socket> socket) {
    auto deadline = std::make_shared<asio::steady_timer>(io_, metrics_read_timeout);
    deadline->async_wait([socket](std::error_code ec) {
      if (ec) return;
      std::error_code ignored;
      socket->close(ignored);
    });
    std::error_code ec;
    asio::streambuf request(metrics_request_bytes_max);
    co_await asio::async_read_until(*socket, request, "\r\n\r\n",
                                    asio::redirect_error(use_awaitable, ec));
    if (ec || !node_) co_return;
    auto m = co_await node_->metrics(use_awaitable);
    const std::string body = m ? coraft::Node::metrics_text(NodeId(o_.id), *m) : std::string();
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
        "Connection: close\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n";
    const std::array<asio::const_buffer, 2> parts{asio::buffer(head), asio::buffer(body)};
    co_await asio::async_write(*socket, parts, asio::redirect_error(use_awaitable, ec));
    deadline->cancel();
    socket->close(ec);
  }

  static constexpr std::size_t metrics_request_bytes_max = 8192;
  static constexpr auto stop_answer_wait = std::chrono::seconds(1);
  static constexpr auto accept_retry_delay = std::chrono::milliseconds(50);
  static constexpr auto client_idle_timeout = std::chrono::seconds(300);
  static constexpr auto metrics_read_timeout = std::chrono::seconds(5);

  asio::io_context& io_;
  const ServeOptions& o_;
  CounterMachine machine_;
  std::shared_ptr<coraft::Node> node_;
  std::optional<tcp::acceptor> clients_;
  std::optional<tcp::acceptor> metrics_;
  std::list<std::shared_ptr<tcp::socket>> connections_;
  std::map<std::uint64_t, std::string> client_addresses_;
  bool stopping_ = false;
  std::size_t in_flight_ = 0;  // requests being handled or answered
  int status_ = 0;
};

}  // namespace

int run_serve(const ServeOptions& o) {
  for (auto level : {coraft::LogLevel::debug, coraft::LogLevel::info, coraft::LogLevel::warn,
                     coraft::LogLevel::error, coraft::LogLevel::off}) {
    if (coraft::to_string(level) == o.log_level) coraft::set_log_level(level);
  }
  asio::io_context io(1);
  Server server(io, o);
  asio::co_spawn(io, server.run(), [&io](std::exception_ptr e) {
    if (e) std::fprintf(stderr, "coraft-counter serve: unexpected failure\n");
    io.stop();
  });
  io.run();
  return server.status();
}

}  // namespace counter
