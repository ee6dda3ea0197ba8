// A transport flooded by strangers keeps serving its peers. Each test is bounded in connections
// and time; CORAFT_NET_FLOOD_CONNECTIONS, CORAFT_NET_FLOOD_SECONDS and CORAFT_NET_FLOOD_SOURCES
// (addresses 127.0.0.1 up to 127.0.0.N, the peer's own first) make the flood larger, longer and
// wider by hand (for example 1000, 60 and 100), and the figures are printed either way.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <doctest/doctest.h>

#include "flood.hpp"
#include "transport_fixture.hpp"

using namespace coraft;
using namespace coraft::net;
using namespace coraft::net::test;
using namespace std::chrono_literals;

namespace {

std::size_t env_or(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  return v ? static_cast<std::size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

// This process's resident set, in KiB (0 when unknown).
std::size_t rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      std::size_t kib = 0;
      status >> kib;
      return kib;
    }
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

TEST_CASE("a restarted peer reconnects and delivers while strangers flood the acceptor") {
  const std::size_t connections = env_or("CORAFT_NET_FLOOD_CONNECTIONS", 300);
  const auto flood_seconds = std::chrono::seconds(env_or("CORAFT_NET_FLOOD_SECONDS", 2));
  LogRecorder logs;
  asio::io_context io;
  auto cb = node_config(n2, {n1});
  TestNode b(io, cb);
  REQUIRE(b->start().ok());
  auto a = std::make_unique<TestNode>(io, node_config(n1, {n2}));
  REQUIRE((*a)->start().ok());
  introduce(*a, n1, b, n2);
  REQUIRE((*a)->send(timeout_now(n2, Term(1))).ok());
  REQUIRE(run_until(io, [&] { return b.inbox.size() == 1; }));

  // Silent and trickling connections from several addresses, one of them the peer's own.
  Flood::Options o;
  o.port = b->local_port();
  o.connections = connections;
  o.sources.clear();
  const std::size_t sources =
      std::clamp<std::size_t>(env_or("CORAFT_NET_FLOOD_SOURCES", 3), 1, 250);
  for (std::size_t i = 1; i <= sources; ++i) o.sources.push_back("127.0.0." + std::to_string(i));
  o.duration_max = flood_seconds + 20s;
  Flood flood(o);
  const std::size_t lines_before = logs.size();
  const auto flood_start = std::chrono::steady_clock::now();
  std::size_t handshaking_max = 0;
  auto sample = [&] {
    handshaking_max = std::max(handshaking_max, b->inbound_stats().handshaking);
    return false;
  };
  run_until(io, sample, flood_seconds / 2);

  // Node 1 restarts mid-flood and must get through.
  REQUIRE(stop_all(io, {a.get()}));
  a = std::make_unique<TestNode>(io, node_config(n1, {n2}));
  REQUIRE((*a)->start().ok());
  introduce(*a, n1, b, n2);
  const auto restarted = std::chrono::steady_clock::now();
  REQUIRE((*a)->send(timeout_now(n2, Term(2))).ok());
  bool delivered = run_until(
      io,
      [&] {
        sample();
        return b.inbox.size() == 2;
      },
      10s);
  const auto reconnect = std::chrono::steady_clock::now() - restarted;
  run_until(io, sample, flood_seconds / 2);
  const auto flood_time = std::chrono::steady_clock::now() - flood_start;
  const std::size_t lines = logs.size() - lines_before;
  const auto stats = b->inbound_stats();
  const std::uint64_t connects = flood.connects();
  flood.stop();

  const double seconds = std::chrono::duration<double>(flood_time).count();
  std::printf(
      "flood: %zu connections from %zu addresses, %llu opened in %.1f s; node 1 delivered %.0f ms "
      "after restarting; "
      "%zu log lines (%.0f per minute, %llu suppressed); at most %zu handshaking; "
      "%llu evicted, %llu refused; RSS %zu KiB\n",
      connections, sources, static_cast<unsigned long long>(connects), seconds,
      std::chrono::duration<double, std::milli>(reconnect).count(), lines, lines * 60 / seconds,
      static_cast<unsigned long long>(stats.lines_suppressed), handshaking_max,
      static_cast<unsigned long long>(stats.evicted),
      static_cast<unsigned long long>(stats.refused), rss_kib());
  CHECK(delivered);
  CHECK(core::term_of(b.inbox.back().body) == Term(2));
  CHECK(handshaking_max <= cb.handshakes_max);
  CHECK(connects > connections);  // the flood did renew its connections
  // The rate limits: 10 + 20 lines per 10 s, plus node 1's own connection lines.
  CHECK(lines <= (static_cast<std::size_t>(seconds / 10) + 1) * 30 + 20);
  CHECK(stop_all(io, {a.get(), &b}));
}
