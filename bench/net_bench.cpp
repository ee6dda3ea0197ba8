// coraft-bench net: AppendRequest frames streamed between two TcpTransports over loopback, each
// on its own thread, and decoded on the receiving side; printed beside the same run's floor:
// raw loopback TCP bandwidth for one stream and the 64-byte round-trip time.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <coraft/log.hpp>

#include "bench_util.hpp"
#include "commands.hpp"
#include "net/transport.hpp"

namespace coraft::bench {
namespace {

using asio::ip::tcp;

const tcp::endpoint loopback(asio::ip::make_address("127.0.0.1"), 0);

// One stream of 1 MiB blocking writes read 1 MiB at a time for `seconds`; the receiver's bytes
// per second.
double floor_bandwidth(double seconds) {
  asio::io_context io;
  tcp::acceptor acceptor(io, loopback);
  std::uint64_t received = 0;
  double elapsed = 0;
  std::thread reader([&] {
    tcp::socket s = acceptor.accept();
    std::vector<char> buf(1 << 20, 1);
    std::error_code ec;
    Clock::time_point start;
    for (bool first = true;;) {
      std::size_t n = s.read_some(asio::buffer(buf), ec);
      if (first) start = Clock::now(), first = false;
      if (ec) break;
      received += n;
    }
    elapsed = seconds_since(start);
  });
  tcp::socket s(io);
  s.connect(acceptor.local_endpoint());
  std::vector<char> buf(1 << 20, 2);
  auto start = Clock::now();
  while (seconds_since(start) < seconds) asio::write(s, asio::buffer(buf));
  s.close();
  reader.join();
  return elapsed > 0 ? static_cast<double>(received) / elapsed : 0;
}

// Median round trip of a 64-byte ping answered by a 64-byte pong, in microseconds.
double floor_rtt_us(int rounds) {
  asio::io_context io;
  tcp::acceptor acceptor(io, loopback);
  std::thread echo([&] {
    tcp::socket s = acceptor.accept();
    s.set_option(tcp::no_delay(true));
    char buf[64];
    std::error_code ec;
    while (!ec) {
      asio::read(s, asio::buffer(buf), ec);
      if (!ec) asio::write(s, asio::buffer(buf), ec);
    }
  });
  tcp::socket s(io);
  s.connect(acceptor.local_endpoint());
  s.set_option(tcp::no_delay(true));
  char buf[64] = {};
  Latencies lat;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    asio::write(s, asio::buffer(buf));
    asio::read(s, asio::buffer(buf));
    lat.add(Clock::now() - t0);
  }
  s.close();
  echo.join();
  return lat.percentile_us(50);
}

struct Counts {
  std::uint64_t frames = 0;
  std::uint64_t entries = 0;
  std::uint64_t payload_bytes = 0;
  Clock::time_point first;
  Clock::time_point last;
};

core::AppendRequest make_request(std::size_t entries, std::size_t payload) {
  core::AppendRequest a{Term(2), Index(1000), Term(2), Index(900), {}};
  for (std::size_t i = 0; i < entries; ++i) {
    std::vector<std::byte> bytes(payload, std::byte(i & 0xff));
    a.entries.push_back(
        Entry{Index(1001 + i), Term(2), EntryType::normal, Bytes::adopt(std::move(bytes))});
  }
  return a;
}

// Sends copies of `request` to node 2 for `seconds` once connected, waiting whenever the
// send queue pushes back.
asio::awaitable<void> pump(net::TcpTransport& t, const core::AppendRequest& request, double seconds,
                           std::atomic<bool>& done, std::string& error) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!t.peer_stats(NodeId(2)).connected) {
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(asio::use_awaitable);
  }
  auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    auto sent = t.send(core::Message{NodeId(1), NodeId(2), core::MessageBody(request)});
    if (sent.ok()) continue;
    if (!sent.error().is(Errc::overloaded)) {
      error = sent.error().message();
      break;
    }
    co_await t.writable(NodeId(2));
  }
  done = true;
}

net::TransportConfig bench_config(NodeId self, NodeId peer, std::uint16_t peer_port) {
  net::TransportConfig c;
  c.cluster_id = 42;
  c.self = self;
  c.peers.push_back({peer, "127.0.0.1", peer_port});
  return c;
}

// Runs the transport pair; fills `counts` from the receiving side.
bool run_transports(std::size_t entries, std::size_t payload, double seconds, Counts& counts) {
  asio::io_context io_send;
  asio::io_context io_recv;
  net::TcpTransport receiver(io_recv, bench_config(NodeId(2), NodeId(1), 0), [&](core::Message m) {
    auto now = Clock::now();
    if (counts.frames++ == 0) counts.first = now;
    counts.last = now;
    const auto& a = std::get<core::AppendRequest>(m.body);
    counts.entries += a.entries.size();
    for (const Entry& e : a.entries) counts.payload_bytes += e.payload.size();
  });
  if (auto ok = receiver.start(); !ok) {
    std::fprintf(stderr, "coraft-bench net: %s\n", ok.error().message().c_str());
    return false;
  }
  net::TcpTransport sender(io_send, bench_config(NodeId(1), NodeId(2), receiver.local_port()),
                           [](core::Message) {});
  if (auto ok = sender.start(); !ok) {
    std::fprintf(stderr, "coraft-bench net: %s\n", ok.error().message().c_str());
    return false;
  }
  // Both listen now; the receiver dials the sender only to be a complete peer.
  receiver.set_peer_address(NodeId(1), "127.0.0.1", sender.local_port());
  auto request = make_request(entries, payload);
  std::atomic<bool> done{false};
  std::string error;
  asio::co_spawn(io_send, pump(sender, request, seconds, done, error), asio::detached);
  std::thread recv_thread([&] { io_recv.run(); });
  std::thread send_thread([&] { io_send.run(); });
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  asio::post(io_send, [&] { sender.stop(); });
  send_thread.join();
  asio::post(io_recv, [&] { receiver.stop(); });
  recv_thread.join();
  if (!error.empty()) std::fprintf(stderr, "coraft-bench net: send failed: %s\n", error.c_str());
  return error.empty() && counts.frames > 1;
}

}  // namespace

int run_net(const NetOptions& o) {
  const std::size_t payload = o.payload;
  const std::size_t entries = o.entries;
  const double seconds = o.seconds;
  // The floor is the best of six short runs, three before and three after the transports run,
  // so that a burst of other load on the machine does not flatter the comparison.
  set_log_level(LogLevel::warn);  // connection notices would clutter the figures
  double floor_run_s = std::min(seconds, 2.0) / 5;
  auto best_floor = [&](double best) {
    for (int i = 0; i < 3; ++i) best = std::max(best, floor_bandwidth(floor_run_s));
    return best;
  };
  double floor_bps = best_floor(0);
  double rtt_us = floor_rtt_us(20000);
  Counts c;
  if (!run_transports(entries, payload, seconds, c)) return 1;
  floor_bps = best_floor(floor_bps);
  double span = std::chrono::duration<double>(c.last - c.first).count();
  double frames_per_s = static_cast<double>(c.frames - 1) / span;
  double entries_per_s = frames_per_s * static_cast<double>(entries);
  double gb_per_s = static_cast<double>(c.payload_bytes) *
                    (static_cast<double>(c.frames - 1) / static_cast<double>(c.frames)) / span /
                    1e9;
  double floor_gb = floor_bps / 1e9;
  std::printf("net: frames of %zu x %zu B entries, %.1f s, sender and receiver on two threads\n",
              entries, payload, seconds);
  std::printf("  frames/s       %12.0f\n", frames_per_s);
  std::printf("  entries/s      %12.0f\n", entries_per_s);
  std::printf("  payload GB/s   %12.3f   (%.0f%% of the floor)\n", gb_per_s,
              floor_gb > 0 ? 100 * gb_per_s / floor_gb : 0.0);
  std::printf("  floor: raw loopback TCP %.3f GB/s (one stream), 64-byte round trip %.1f us\n",
              floor_gb, rtt_us);
  if (o.json) {
    JsonLine()
        .str("command", "net")
        .num("payload", static_cast<double>(payload))
        .num("entries", static_cast<double>(entries))
        .num("seconds", seconds)
        .num("frames_per_s", frames_per_s)
        .num("entries_per_s", entries_per_s)
        .num("gb_per_s", gb_per_s)
        .num("floor_gb_per_s", floor_gb)
        .num("floor_rtt_us", rtt_us)
        .print();
  }
  return 0;
}

}  // namespace coraft::bench
