// Mutual TLS between peers. The certificates are made at test time with the openssl tool: a
// cluster CA signing certificates that name nodes 1 and 2 (by DNS subjectAltName, by common name
// only, and with the cluster name "blue"), and an unrelated CA signing an intruder's certificate.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "transport_fixture.hpp"

using namespace coraft;
using namespace coraft::net;
using namespace coraft::net::test;
using namespace std::chrono_literals;

namespace {

const NodeId n1(1);
const NodeId n2(2);
const NodeId n3(3);

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
          make_cert("intruder", "rogue-ca", "node-1", "node-1");
  }
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
  // A certificate `file`.crt with subject common name `cn` and, unless `dns` is empty, that DNS
  // subjectAltName.
  bool make_cert(const std::string& file, const std::string& ca, const std::string& cn,
                 const std::string& dns) const {
    std::string extensions;
    if (!dns.empty()) {
      std::ofstream(path(file + ".ext")) << "subjectAltName=DNS:" << dns << "\n";
      extensions = " -extfile " + file + ".ext";
    }
    return run("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + cn +
               " -keyout " + file + ".key -out " + file + ".csr") &&
           run("x509 -req -days 2 -in " + file + ".csr -CA " + ca + ".crt -CAkey " + ca +
               ".key -CAcreateserial -out " + file + ".crt" + extensions);
  }

  std::string dir_;
  bool ok_ = false;
};

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

core::Message timeout_now(NodeId target) {
  return {no_node, target, core::MessageBody(core::TimeoutNow{Term(3)})};
}

}  // namespace

TEST_CASE("peers with certificates from the cluster CA talk over TLS") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  asio::io_context io;
  TestNode a(io, tls_config(n1, n2, certs.config("node1")));
  TestNode b(io, tls_config(n2, n1, certs.config("node2")));
  REQUIRE(a->start().ok());
  REQUIRE(b->start().ok());
  introduce(a, n1, b, n2);
  auto samples = sample_messages();
  for (const auto& m : samples) REQUIRE(a->send({no_node, n2, m}).ok());
  REQUIRE(run_until(io, [&] { return b.inbox.size() == samples.size(); }));
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(same(samples[i], b.inbox[i].body));
  CHECK(a->peer_stats(n2).connected);
  CHECK(stop_all(io, {&a, &b}));
}

TEST_CASE("a certificate for node 2 used by a process claiming node 3 is refused on both sides") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  asio::io_context io;
  TestNode a(io, tls_config(n1, n3, certs.config("node1")));
  // Signed by the cluster CA, but naming node 2.
  TestNode impostor(io, tls_config(n3, n1, certs.config("node2")));
  REQUIRE(a->start().ok());
  REQUIRE(impostor->start().ok());
  CHECK(logs.contains("node 3: this node's certificate", "does not name it"));
  introduce(a, n1, impostor, n3);
  REQUIRE(a->send(timeout_now(n3)).ok());
  REQUIRE(impostor->send(timeout_now(n1)).ok());
  std::string dialled =
      "node 1: cannot connect to node 3 at 127.0.0.1:" + std::to_string(impostor->local_port()) +
      ": ";
  // Accepting: the impostor's handshake claims node 3. Dialling: node 1 dialled node 3.
  REQUIRE(run_until(io, [&] {
    return logs.contains("node 1: refused connection from",
                         "the peer's certificate does not name node 3") &&
           logs.contains(dialled, "the peer's certificate does not name node 3");
  }));
  run_for(io, 100ms);
  CHECK(a.inbox.empty());
  CHECK(impostor.inbox.empty());
  CHECK(!a->peer_stats(n3).connected);
  CHECK(!impostor->peer_stats(n1).connected);
  CHECK(a->inbound_connections() == 0);
  CHECK(impostor->inbound_connections() == 0);
  CHECK(stop_all(io, {&a, &impostor}));
}

TEST_CASE("a certificate naming its node only in the common name is accepted") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  asio::io_context io;
  TestNode a(io, tls_config(n1, n2, certs.config("node1")));
  TestNode b(io, tls_config(n2, n1, certs.config("node2-cn")));
  REQUIRE(a->start().ok());
  REQUIRE(b->start().ok());
  introduce(a, n1, b, n2);
  REQUIRE(a->send(timeout_now(n2)).ok());
  REQUIRE(b->send(timeout_now(n1)).ok());
  REQUIRE(run_until(io, [&] { return a.inbox.size() == 1 && b.inbox.size() == 1; }));
  CHECK(a.inbox[0].from == n2);
  CHECK(b.inbox[0].from == n1);
  CHECK(stop_all(io, {&a, &b}));
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
    asio::io_context io;
    TestNode a(io, blue(n1, n2, "blue-node1"));
    TestNode b(io, blue(n2, n1, "blue-node2"));
    REQUIRE(a->start().ok());
    REQUIRE(b->start().ok());
    introduce(a, n1, b, n2);
    REQUIRE(a->send(timeout_now(n2)).ok());
    REQUIRE(run_until(io, [&] { return b.inbox.size() == 1; }));
    CHECK(stop_all(io, {&a, &b}));
  }
  SUBCASE("a name without the prefix is refused") {
    LogRecorder logs;
    asio::io_context io;
    TestNode a(io, blue(n1, n2, "blue-node1"));
    TestNode b(io, blue(n2, n1, "node2"));
    REQUIRE(a->start().ok());
    REQUIRE(b->start().ok());
    introduce(a, n1, b, n2);
    REQUIRE(a->send(timeout_now(n2)).ok());
    REQUIRE(run_until(
        io, [&] { return logs.contains("node 1: cannot connect to node 2", "'blue-node-2'"); }));
    run_for(io, 100ms);
    CHECK(b.inbox.empty());
    CHECK(!a->peer_stats(n2).connected);
    CHECK(stop_all(io, {&a, &b}));
  }
}

TEST_CASE("a peer whose certificate another CA signed is refused") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  asio::io_context io;
  // The intruder trusts the cluster CA, but its own certificate comes from elsewhere.
  TestNode a(io, tls_config(n1, n2, certs.config("intruder", "ca")));
  TestNode b(io, tls_config(n2, n1, certs.config("node2")));
  REQUIRE(a->start().ok());
  REQUIRE(b->start().ok());
  introduce(a, n1, b, n2);
  REQUIRE(a->send(timeout_now(n2)).ok());
  REQUIRE(run_until(io, [&] {
    return logs.contains("node 2: refused connection") && logs.contains("TLS handshake failed");
  }));
  run_for(io, 100ms);
  CHECK(b.inbox.empty());
  CHECK(!a->peer_stats(n2).connected);
  CHECK(b->inbound_connections() == 0);
  CHECK(stop_all(io, {&a, &b}));
}

TEST_CASE("a plaintext peer is refused by a TLS node") {
  const auto& certs = certificates();
  REQUIRE(certs.ok());
  LogRecorder logs;
  asio::io_context io;
  TestNode a(io, tls_config(n1, n2, std::nullopt));
  TestNode b(io, tls_config(n2, n1, certs.config("node2")));
  REQUIRE(a->start().ok());
  REQUIRE(b->start().ok());
  introduce(a, n1, b, n2);
  REQUIRE(a->send(timeout_now(n2)).ok());
  REQUIRE(run_until(io, [&] { return logs.contains("TLS handshake failed"); }));
  run_for(io, 100ms);
  CHECK(b.inbox.empty());
  CHECK(!a->peer_stats(n2).connected);
  CHECK(stop_all(io, {&a, &b}));
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
