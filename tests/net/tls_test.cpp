// Mutual TLS between peers. The certificates are made at test time with the openssl tool: a
// cluster CA signing certificates that name nodes 1 and 2 (by DNS subjectAltName, by common name
// only, and with the cluster name "blue"), and an unrelated CA signing an intruder's certificate.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "flood.hpp"
#include "transport_fixture.hpp"

using namespace coraft;
using namespace coraft::net;
using namespace coraft::net::test;
using namespace std::chrono_literals;

namespace {

class Certificates {
 public:
  Certificates() {
    char pattern[] = "/tmp/coraft-tls-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    dir_ = made;
    ok_ = make_ca("ca") && make_ca("rogue-ca") && make_cert("node1", "ca", "node-1", "node-1") &&
          make_cert("node2", "ca", "node-2", "node-2") &&
          make_cert("node2-cn", "ca", "node-2", "") &&
          make_cert("blue-node1", "ca", "blue-node-1", "blue-node-1") &&
          make_cert("blue-node2", "ca", "blue-node-2", "blue-node-2") &&
          make_cert("intruder", "rogue-ca", "node-1", "node-1") &&
          make_cert("node1-expired", "ca", "node-1", "node-1", "", 0) &&
          make_cert("node1-codesign", "ca", "node-1", "node-1", "extendedKeyUsage=codeSigning\n");
    made_at = std::chrono::steady_clock::now();
  }
  // When the last certificate was made.
  std::chrono::steady_clock::time_point made_at{};
  ~Certificates() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] TlsConfig config(const std::string& cert, const std::string& ca = "ca") const {
    return {path(ca + ".crt"), path(cert + ".crt"), path(cert + ".key"), ""};
  }
  [[nodiscard]] std::string path(const std::string& file) const { return dir_ + "/" + file; }

 private:
  bool run(const std::string& args) const {
    std::string cmd = "cd " + dir_ + " && openssl " + args + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }
  bool make_ca(const std::string& name) const {
    return run(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" +
        name + " -keyout " + name + ".key -out " + name + ".crt");
  }
  // A certificate `file`.crt with subject common name `cn`, unless `dns` is empty that DNS
  // subjectAltName, the extension lines `more`, valid for `days` (0: expired a second later).
  bool make_cert(const std::string& file, const std::string& ca, const std::string& cn,
                 const std::string& dns, const std::string& more = "", int days = 2) const {
    std::string extensions;
    if (!dns.empty() || !more.empty()) {
      std::ofstream ext(path(file + ".ext"));
      if (!dns.empty()) ext << "subjectAltName=DNS:" << dns << "\n";
      ext << more;
      extensions = " -extfile " + file + ".ext";
    }
    return run("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + cn +
               " -keyout " + file + ".key -out " + file + ".csr") &&
           run("x509 -req -days " + std::to_string(days) + " -in " + file + ".csr -CA " + ca +
               ".crt -CAkey " + ca + ".key -CAcreateserial -out " + file + ".crt" + extensions);
  }

  std::string dir_;
  bool ok_ = false;
};

std::size_t flood_env(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  return v ? static_cast<std::size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

const Certificates& certificates() {
  static Certificates c;
  return c;
}

TransportConfig tls_config(NodeId self, NodeId peer, std::optional<TlsConfig> tls) {
  auto c = node_config(self, {peer});
  c.tls = std::move(tls);
  c.reconnect_delay_min = 20ms;
  c.reconnect_delay_max = 200ms;
  return c;
}

// Node 1 sends node 2 a message: `refused` must come to hold, and a while later nothing has
// been delivered and node 1 is still not connected to node 2.
void check_refused(Pair& p, const std::function<bool()>& refused) {
  REQUIRE(p.a->send(timeout_now(n2)).ok());
  REQUIRE(run_until(p.io, refused));
  run_for(p.io, 100ms);
  CHECK(p.b.inbox.empty());
  CHECK(!p.a->peer_stats(n2).connected);
}

}  // namespace

TEST_CASE("peers with certificates from the cluster CA talk over TLS") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  Pair p(tls_config(n1, n2, certs.config("node1")), tls_config(n2, n1, certs.config("node2")));
  auto samples = sample_messages();
  for (const auto& m : samples) REQUIRE(p.a->send(to(n2, m)).ok());
  REQUIRE(run_until(p.io, [&] { return p.b.inbox.size() == samples.size(); }));
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(same(samples[i], p.b.inbox[i].body));
  CHECK(p.a->peer_stats(n2).connected);
}

TEST_CASE("a certificate for node 2 used by a process claiming node 3 is refused on both sides") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  // Node 3 (b) is an impostor: its certificate is signed by the cluster CA but names node 2.
  Pair p(tls_config(n1, n3, certs.config("node1")), tls_config(n3, n1, certs.config("node2")));
  CHECK(logs.contains("node 3: this node's certificate", "does not name it"));
  REQUIRE(p.a->send(timeout_now(n3)).ok());
  REQUIRE(p.b->send(timeout_now(n1)).ok());
  std::string dialled =
      "node 1: cannot connect to node 3 at 127.0.0.1:" + std::to_string(p.b->local_port()) + ": ";
  // Accepting: the impostor's handshake claims node 3. Dialling: node 1 dialled node 3.
  REQUIRE(run_until(p.io, [&] {
    return logs.contains("node 1: refused connection from",
                         "the peer's certificate does not name node 3") &&
           logs.contains(dialled, "the peer's certificate does not name node 3");
  }));
  run_for(p.io, 100ms);
  CHECK(p.a.inbox.empty());
  CHECK(p.b.inbox.empty());
  CHECK(!p.a->peer_stats(n3).connected);
  CHECK(!p.b->peer_stats(n1).connected);
  CHECK(p.a->inbound_connections() == 0);
  CHECK(p.b->inbound_connections() == 0);
}

TEST_CASE("a certificate naming its node only in the common name is accepted") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  Pair p(tls_config(n1, n2, certs.config("node1")), tls_config(n2, n1, certs.config("node2-cn")));
  REQUIRE(p.a->send(timeout_now(n2)).ok());
  REQUIRE(p.b->send(timeout_now(n1)).ok());
  REQUIRE(run_until(p.io, [&] { return p.a.inbox.size() == 1 && p.b.inbox.size() == 1; }));
  CHECK(p.a.inbox[0].from == n2);
  CHECK(p.b.inbox[0].from == n1);
}

TEST_CASE("with a cluster name, certificates must carry the prefixed node name") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  auto blue = [&](NodeId self, NodeId peer, const std::string& cert) {
    TlsConfig tls = certs.config(cert);
    tls.cluster_name = "blue";
    return tls_config(self, peer, tls);
  };
  CHECK(certificate_name(blue(n1, n2, "blue-node1").tls.value(), n2) == "blue-node-2");
  SUBCASE("prefixed names are accepted") {
    Pair p(blue(n1, n2, "blue-node1"), blue(n2, n1, "blue-node2"));
    REQUIRE(p.a->send(timeout_now(n2)).ok());
    REQUIRE(run_until(p.io, [&] { return p.b.inbox.size() == 1; }));
  }
  SUBCASE("a name without the prefix is refused") {
    LogRecorder logs;
    Pair p(blue(n1, n2, "blue-node1"), blue(n2, n1, "node2"));
    check_refused(
        p, [&] { return logs.contains("node 1: cannot connect to node 2", "'blue-node-2'"); });
  }
}

TEST_CASE("a peer whose certificate another CA signed is refused") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  // The intruder trusts the cluster CA, but its own certificate comes from elsewhere.
  Pair p(tls_config(n1, n2, certs.config("intruder", "ca")),
         tls_config(n2, n1, certs.config("node2")));
  check_refused(p, [&] {
    return logs.contains("node 2: refused connection") && logs.contains("TLS handshake failed");
  });
  CHECK(p.b->inbound_connections() == 0);
}

TEST_CASE("each TLS refusal logs the verification error and the certificate's subject") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  // The expired certificate's validity ends on the second it was made.
  std::this_thread::sleep_until(certs.made_at + 1100ms);
  LogRecorder logs;
  std::string cert;
  std::string cause;
  SUBCASE("expired") {
    cert = "node1-expired";
    cause = "certificate has expired";
  }
  SUBCASE("signed by an unknown CA") {
    cert = "intruder";
    cause = "unable to get local issuer certificate";
  }
  SUBCASE("for another purpose") {
    cert = "node1-codesign";
    cause = "unsuitable certificate purpose";
  }
  CAPTURE(cert);
  // Node 1 presents `cert` to node 2, which refuses it; and node 2, presenting the same
  // certificate as node 1's server side would, is refused by node 1's dialler the same way.
  Pair p(tls_config(n1, n2, certs.config(cert)), tls_config(n2, n1, certs.config("node2")));
  check_refused(p, [&] {
    return logs.contains("node 2: refused connection", cause) &&
           logs.contains("node 2: refused connection", "subject 'CN=node-1'");
  });
  Pair q(tls_config(n2, n1, certs.config("node2")), tls_config(n1, n2, certs.config(cert)));
  REQUIRE(q.a->send(timeout_now(n1)).ok());
  REQUIRE(run_until(q.io, [&] {
    return logs.contains("node 2: cannot connect to node 1", cause) &&
           logs.contains("node 2: cannot connect to node 1", "subject 'CN=node-1'");
  }));
}

TEST_CASE("a plaintext peer is refused by a TLS node") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  Pair p(tls_config(n1, n2, std::nullopt), tls_config(n2, n1, certs.config("node2")));
  check_refused(p, [&] { return logs.contains("TLS handshake failed"); });
}

TEST_CASE("start fails clearly when a TLS file cannot be loaded") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  asio::io_context io;
  TlsConfig tls = certs.config("node1");
  tls.key_file = certs.path("missing.key");
  TestNode a(io, tls_config(n1, n2, tls));
  auto started = a->start();
  REQUIRE(!started.ok());
  CHECK(started.error().is(Errc::invalid_argument));
  CHECK(started.error().detail.find("missing.key") != std::string::npos);
}

TEST_CASE("a restarted TLS peer reconnects while strangers flood the acceptor") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  const std::size_t connections = flood_env("CORAFT_NET_FLOOD_CONNECTIONS", 300);
  const std::size_t sources = flood_env("CORAFT_NET_FLOOD_SOURCES", 3);
  asio::io_context io;
  TestNode b(io, tls_config(n2, n1, certs.config("node2")));
  REQUIRE(b->start().ok());
  Flood::Options o;
  o.port = b->local_port();
  o.connections = connections;
  o.sources.clear();
  for (std::size_t i = 1; i <= sources; ++i) o.sources.push_back("127.0.0." + std::to_string(i));
  o.duration_max = 30s;
  Flood flood(o);
  run_for(io, 500ms);
  // Node 1 starts mid-flood (its first handshake is as good as a restart's).
  TestNode a(io, tls_config(n1, n2, certs.config("node1")));
  REQUIRE(a->start().ok());
  introduce(a, n1, b, n2);
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(a->send(timeout_now(n2, Term(2))).ok());
  bool delivered = run_until(
      io, [&] { return b.inbox.size() == 1; }, 10s);
  const auto took = std::chrono::steady_clock::now() - started;
  const auto stats = b->inbound_stats();
  flood.stop();
  std::printf(
      "TLS flood: %zu connections from %zu addresses, %llu evicted; node 1 delivered %.0f ms "
      "after starting, after %llu connects\n",
      connections, sources, static_cast<unsigned long long>(stats.evicted),
      std::chrono::duration<double, std::milli>(took).count(),
      static_cast<unsigned long long>(a->peer_stats(n2).connects));
  CHECK(delivered);
  CHECK(stop_all(io, {&a, &b}));
}
