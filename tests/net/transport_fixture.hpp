// Transport setups (two introduced nodes, or one listening node) and a raw TCP client for
// speaking bad protocol at a transport.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "net/transport.hpp"
#include "net_test_util.hpp"

namespace coraft::net::test {

inline constexpr std::uint64_t cluster = 0xc0ffee;

// Nodes 1 and 2 run in the two-node setups. Node 3 is a configured peer that no transport runs:
// raw clients speak as node 3, so that the real node 1's connection does not replace theirs.
inline constexpr NodeId n1(1);
inline constexpr NodeId n2(2);
inline constexpr NodeId n3(3);

// A message for `target` as a transport's caller hands it over (the sender is filled in).
inline core::Message to(NodeId target, core::MessageBody body) {
  return {no_node, target, std::move(body)};
}

// The smallest message: a TimeoutNow for `target`.
inline core::Message timeout_now(NodeId target, Term term = Term(1)) {
  return to(target, core::MessageBody(core::TimeoutNow{term}));
}

// A transport with its own inbox.
struct TestNode {
  std::vector<core::Message> inbox;
  std::unique_ptr<TcpTransport> transport;

  TestNode(asio::io_context& io, TransportConfig config) {
    transport = std::make_unique<TcpTransport>(
        io, std::move(config), [this](core::Message m) { inbox.push_back(std::move(m)); });
  }
  TestNode(const asio::any_io_executor& ex, TransportConfig config) {
    transport = std::make_unique<TcpTransport>(
        ex, std::move(config), [this](core::Message m) { inbox.push_back(std::move(m)); });
  }
  TcpTransport* operator->() { return transport.get(); }
};

inline TransportConfig node_config(NodeId self, std::vector<NodeId> peers,
                                   std::uint64_t cluster_id = cluster) {
  TransportConfig c;
  c.cluster_id = cluster_id;
  c.self = self;
  for (NodeId p : peers) c.peers.push_back(PeerAddress{p, "127.0.0.1", 0});
  c.reconnect_delay_min = std::chrono::milliseconds(5);
  c.reconnect_delay_max = std::chrono::milliseconds(100);
  c.handshake_timeout = std::chrono::milliseconds(2000);
  return c;
}

// Points each node at the other's listening port.
inline void introduce(TestNode& a, NodeId a_id, TestNode& b, NodeId b_id) {
  a->set_peer_address(b_id, "127.0.0.1", b->local_port());
  b->set_peer_address(a_id, "127.0.0.1", a->local_port());
}

// Stops every transport and runs the io_context until all their coroutines have finished.
inline bool stop_all(asio::io_context& io, std::initializer_list<TestNode*> nodes) {
  for (TestNode* n : nodes) (*n)->stop();
  return run_until(io, [&] {
    for (TestNode* n : nodes) {
      if (!(*n)->stopped()) return false;
    }
    return true;
  });
}

// Two started nodes, each pointed at the other's port; each knows the other as its first
// configured peer (which need not be the id the other claims). Stops both when it goes.
struct Pair {
  asio::io_context io;
  TestNode a;
  TestNode b;
  explicit Pair(const TransportConfig& ca = node_config(n1, {n2}),
                const TransportConfig& cb = node_config(n2, {n1}))
      : a(io, ca), b(io, cb) {
    REQUIRE(a->start().ok());
    REQUIRE(b->start().ok());
    REQUIRE(!ca.peers.empty());
    REQUIRE(!cb.peers.empty());
    introduce(a, cb.peers.front().id, b, ca.peers.front().id);
  }
  ~Pair() { CHECK(stop_all(io, {&a, &b})); }
};

// One started node for raw clients to connect to; stops it when it goes.
struct Listener {
  asio::io_context io;
  TestNode node;
  explicit Listener(TransportConfig config) : node(io, std::move(config)) {
    REQUIRE(node->start().ok());
  }
  ~Listener() { CHECK(stop_all(io, {&node})); }
};

// A plain TCP client on its own io_context, polled without blocking the transport's thread.
class RawClient {
 public:
  // Connects from `source` (any address of 127.0.0.0/8 is this host's).
  explicit RawClient(std::uint16_t port, const char* source = "127.0.0.1") {
    socket_.open(asio::ip::tcp::v4());
    socket_.bind(asio::ip::tcp::endpoint(asio::ip::make_address(source), 0));
    socket_.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    socket_.non_blocking(true);
  }
  void send(const std::vector<std::byte>& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      std::error_code ec;
      done += socket_.write_some(asio::buffer(bytes.data() + done, bytes.size() - done), ec);
      if (ec && ec != asio::error::would_block) return;  // the transport hung up: fine
    }
  }
  void send(FrameBody body) { send(encode(std::move(body), CodecLimits{})->flatten()); }
  void send_handshake(NodeId sender, NodeId receiver, std::uint64_t cluster_id = cluster,
                      std::uint32_t version = protocol_version) {
    send(Handshake{version, cluster_id, sender, receiver});
  }
  // Sends a handshake and runs the transport's `io` until its reply arrives; true if the reply
  // accepts the connection.
  bool handshake(asio::io_context& io, NodeId sender, NodeId receiver) {
    send_handshake(sender, receiver);
    std::optional<HandshakeReply> answer;
    run_until(io, [&] { return (answer = reply()).has_value(); });
    return answer && answer->accepted;
  }
  // Reads what has arrived; true once the transport closed the connection.
  bool closed() {
    for (;;) {
      std::byte buf[4096];
      std::error_code ec;
      std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      received_.insert(received_.end(), buf, buf + n);
      if (ec == asio::error::would_block) return false;
      if (ec) return true;
    }
  }
  // The handshake reply, once it has arrived.
  std::optional<HandshakeReply> reply() {
    closed();
    if (received_.size() < 8) return std::nullopt;
    std::uint32_t words = 0;
    std::memcpy(&words, received_.data() + 4, 4);
    std::size_t size = 8 + std::size_t{words} * 8;
    if (received_.size() < size) return std::nullopt;
    auto body = decode(aligned_frame({received_.begin(), received_.begin() + size}), CodecLimits{});
    if (!body || !std::holds_alternative<HandshakeReply>(*body)) return std::nullopt;
    return std::get<HandshakeReply>(*body);
  }

 private:
  asio::io_context ctx_;
  asio::ip::tcp::socket socket_{ctx_};
  std::vector<std::byte> received_;
};

}  // namespace coraft::net::test

namespace coraft::net::test {

// A listener on the test's io_context that answers every connection's first bytes with
// `answer` (say, a handshake reply) and then holds the connection open until the far end closes.
class FakePeer {
 public:
  FakePeer(asio::io_context& io, std::vector<std::byte> answer)
      : acceptor_(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        answer_(std::move(answer)) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  ~FakePeer() {
    std::error_code ignored;
    acceptor_.close(ignored);
    for (auto& s : *open_) s->close(ignored);
  }
  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  [[nodiscard]] std::size_t connections() const { return *accepted_; }

 private:
  asio::awaitable<void> accept_loop() {
    auto open = open_;
    auto accepted = accepted_;
    for (;;) {
      auto [ec, socket] =
          co_await acceptor_.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      ++*accepted;
      auto s = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
      open->push_back(s);
      asio::co_spawn(acceptor_.get_executor(), serve(s, answer_), asio::detached);
    }
  }
  static asio::awaitable<void> serve(std::shared_ptr<asio::ip::tcp::socket> s,
                                     std::vector<std::byte> answer) {
    constexpr auto tuple = asio::experimental::as_tuple(asio::use_awaitable);
    std::byte buf[4096];
    auto [ec, n] = co_await s->async_read_some(asio::buffer(buf), tuple);
    if (ec) co_return;
    auto [wec, wn] = co_await asio::async_write(*s, asio::buffer(answer), tuple);
    if (wec) co_return;
    for (;;) {
      auto [rec, rn] = co_await s->async_read_some(asio::buffer(buf), tuple);
      if (rec) co_return;
    }
  }

  asio::ip::tcp::acceptor acceptor_;
  std::vector<std::byte> answer_;
  std::shared_ptr<std::vector<std::shared_ptr<asio::ip::tcp::socket>>> open_ =
      std::make_shared<std::vector<std::shared_ptr<asio::ip::tcp::socket>>>();
  std::shared_ptr<std::size_t> accepted_ = std::make_shared<std::size_t>(0);
};

}  // namespace coraft::net::test
