// net_capture OUT_FILE: records the bytes a TcpTransport puts on the wire (its handshake, a few
// messages, one with a payload sent as external data, and the keepalive that follows once it has
// nothing more to send) into OUT_FILE, so that a test can check that
// `capnp decode schema/raft.capnp Frame` reads the capture.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "net/frame_reader.hpp"
#include "net/transport.hpp"
#include "net_test_util.hpp"

using namespace coraft;
using namespace coraft::net;

namespace {

constexpr std::uint64_t cluster = 0xc0ffee;
constexpr std::uint64_t group = 7;
constexpr std::size_t frames_wanted = 5;  // the handshake, three messages and a keepalive

// Plays node 2 by hand: accepts the connection, answers the handshake and records every byte.
asio::awaitable<void> record(asio::ip::tcp::acceptor& acceptor, std::vector<std::byte>& out,
                             bool& done) {
  auto socket = co_await acceptor.async_accept(asio::use_awaitable);
  CodecLimits limits;
  FrameReader reader(limits);
  std::size_t frames = 0;
  while (frames < frames_wanted) {
    auto space = reader.prepare();
    std::size_t n = co_await socket.async_read_some(asio::buffer(space.data(), space.size()),
                                                    asio::use_awaitable);
    out.insert(out.end(), space.data(), space.data() + n);
    reader.commit(n);
    for (;;) {
      auto next = reader.next();
      if (!next || !*next) break;
      if (frames++ == 0) {
        auto reply =
            encode(HandshakeReply{true, protocol_version, cluster, NodeId(2), "", group}, limits);
        co_await asio::async_write(socket, reply->buffers(), asio::use_awaitable);
      }
    }
  }
  done = true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: net_capture OUT_FILE\n");
    return 2;
  }
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<std::byte> captured;
  bool done = false;
  asio::co_spawn(io, record(acceptor, captured, done), asio::detached);

  TransportConfig config;
  config.cluster_id = cluster;
  config.group_id = group;
  config.self = NodeId(1);
  config.peers.push_back({NodeId(2), "127.0.0.1", acceptor.local_endpoint().port()});
  config.keepalive_interval = std::chrono::milliseconds(20);
  TcpTransport transport(io, config, [](core::Message) {});
  if (!transport.start().ok()) return 1;

  core::AppendRequest append{Term(5), Index(100), Term(4), Index(90), {}};
  append.entries.push_back(
      {Index(101), Term(5), EntryType::normal, Bytes::copy_of("hello coraft")});
  append.entries.push_back(
      {Index(102), Term(5), EntryType::normal, Bytes::copy_of(std::string(65536, 'x'))});
  (void)transport.send({NodeId(1), NodeId(2), core::MessageBody(std::move(append))});
  (void)transport.send(
      {NodeId(1), NodeId(2),
       core::MessageBody(core::VoteRequest{Term(6), Index(102), Term(5), true, false})});
  (void)transport.send(
      {NodeId(1), NodeId(2), core::MessageBody(core::HeartbeatRequest{Term(6), Index(101), 4242})});

  bool ok = test::run_until(io, [&] { return done; });
  transport.stop();
  ok = test::run_until(io, [&] { return transport.stopped(); }) && ok;
  if (!ok) {
    std::fprintf(stderr, "net_capture: the transport did not send the expected frames\n");
    return 1;
  }
  std::ofstream(argv[1], std::ios::binary)
      .write(reinterpret_cast<const char*>(captured.data()),
             static_cast<std::streamsize>(captured.size()));
  return 0;
}
