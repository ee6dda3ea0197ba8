// libFuzzer target for the accepting side of the transport, over real loopback connections:
// the TLS handshake's first bytes, the peer handshake and the frames after it, as a stranger on
// the network would send them.
//
// Input: one byte choosing the mode (bit 0 set: plaintext, clear: TLS), then the bytes a client
// sends on a fresh connection before closing its sending side. The transport must close or keep
// the connection cleanly; nothing may crash, leak, hang or log a raw control character. Seeds:
// tests/fuzz/corpus/net (plaintext frames, whose handshake matches the configuration below) and
// tests/fuzz/corpus/net_tls (a TLS ClientHello).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <asio/io_context.hpp>

#include <coraft/log.hpp>

#include "net/transport.hpp"

namespace {

using namespace coraft;
using namespace coraft::net;

struct Target {
  asio::io_context io;
  std::unique_ptr<TcpTransport> plain;
  std::unique_ptr<TcpTransport> tls;
};

// Writes a throwaway cluster CA and node certificate for the TLS transport; empty on failure.
std::string make_certificates() {
  char pattern[] = "/tmp/coraft-fuzz-tls-XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  if (dir == nullptr) return {};
  std::string d = dir;
  auto run = [&](const std::string& args) {
    return std::system(("cd " + d + " && openssl " + args + " >/dev/null 2>&1").c_str()) == 0;
  };
  std::FILE* ext = std::fopen((d + "/node.ext").c_str(), "w");
  if (ext == nullptr) return {};
  std::fputs("subjectAltName=DNS:node-2\n", ext);
  std::fclose(ext);
  bool ok = run("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 "
                "-subj /CN=ca -keyout ca.key -out ca.crt") &&
            run("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=node-2 "
                "-keyout node.key -out node.csr") &&
            run("x509 -req -days 30 -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-out node.crt -extfile node.ext");
  return ok ? d : std::string();
}

TransportConfig config(std::optional<TlsConfig> tls) {
  TransportConfig c;
  c.cluster_id = 7;  // as the seed corpus's handshake: node 1 to node 2 of cluster 7
  c.self = NodeId(2);
  c.peers.push_back(PeerAddress{NodeId(1), "127.0.0.1", 0});
  c.limits.frame_bytes_max = std::size_t{64} << 10;
  c.inbound_handshake_timeout = std::chrono::milliseconds(200);
  c.idle_timeout = std::chrono::milliseconds(200);
  c.frame_timeout = std::chrono::milliseconds(200);
  c.reconnect_delay_min = c.reconnect_delay_max = std::chrono::hours(1);  // no dialling to speak of
  c.tls = std::move(tls);
  return c;
}

Target& target() {
  static Target* t = [] {
    auto* made = new Target;
    // Every line must stay one printable line, whatever the input held.
    set_log_sink([](LogLevel, std::string_view line) {
      for (char c : line) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) __builtin_trap();
      }
    });
    auto deliver = [](core::Message) {};
    made->plain = std::make_unique<TcpTransport>(made->io, config(std::nullopt), deliver);
    if (!made->plain->start().ok()) std::abort();
    std::string dir = make_certificates();
    if (!dir.empty()) {
      TlsConfig tls{dir + "/ca.crt", dir + "/node.crt", dir + "/node.key", ""};
      made->tls = std::make_unique<TcpTransport>(made->io, config(tls), deliver);
      if (!made->tls->start().ok()) std::abort();
    } else {
      std::fprintf(stderr, "net_transport_fuzzer: openssl failed; TLS inputs run plaintext\n");
    }
    return made;
  }();
  return *t;
}

int connect_to(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  Target& t = target();
  TcpTransport& server = (data[0] & 1) || !t.tls ? *t.plain : *t.tls;
  ++data;
  --size;
  int fd = connect_to(server.local_port());
  if (fd < 0) return 0;
  // Send everything (running the transport while the socket is full), then close the sending
  // side and wait, bounded, for the transport to close the connection.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::size_t sent = 0;
  bool shut = false;
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() < deadline) {
    if (sent < size) {
      ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) closed = true;
    } else if (!shut) {
      shut = ::shutdown(fd, SHUT_WR) == 0 || errno != ENOTCONN;
    }
    t.io.restart();
    t.io.run_for(std::chrono::microseconds(200));
    char buf[4096];
    ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) {
      closed = true;
    }
  }
  ::close(fd);
  // Every input ends in a closed connection well within the deadline: handshake, idle and frame
  // timeouts are 200 ms here, and end of stream closes at once.
  if (!closed) __builtin_trap();
  // The connection's coroutine finishes on the transport's side.
  t.io.restart();
  t.io.poll();
  return 0;
}
