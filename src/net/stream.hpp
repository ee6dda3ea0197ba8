// One peer connection's byte stream: plain TCP, or TLS over TCP, behind one coroutine interface.
//
// Errors come back as values: a peer going away is a normal outcome here. close() makes every
// pending operation on the stream complete with an error, which is how deadlines and shutdown
// end the coroutines waiting on it.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>

namespace coraft::net {

// Marks a socket close-on-exec, so that a process the service starts does not inherit it (a
// child holding a copy would keep a connection open after this process closed it).
void close_on_exec(int native_handle) noexcept;

// True when the certificate `ctx` presents (this node's own) names `name`.
[[nodiscard]] bool certificate_names(asio::ssl::context& ctx, const std::string& name);

class Stream {
 public:
  // A stream that has not connected yet; TLS when `tls` is given.
  Stream(const asio::any_io_executor& ex, asio::ssl::context* tls);
  // A stream over an accepted socket.
  Stream(asio::ip::tcp::socket socket, asio::ssl::context* tls);
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  // Tries each endpoint in turn until one connects.
  [[nodiscard]] asio::awaitable<std::error_code> connect(
      const std::vector<asio::ip::tcp::endpoint>& endpoints);
  // Runs the TLS handshake (verifying the peer's certificate); does nothing for plain TCP.
  [[nodiscard]] asio::awaitable<std::error_code> handshake(bool client);
  [[nodiscard]] asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(
      std::span<std::byte> into);
  // Writes every buffer, in order, as one gathered write.
  [[nodiscard]] asio::awaitable<std::error_code> write(const std::vector<asio::const_buffer>& bufs);

  // What made handshake() fail with `ec`: ec's message and, when this side refused the peer's
  // certificate, the verification error and the subject of the certificate it concerned
  // (escaped and bounded: the peer chose it).
  [[nodiscard]] std::string handshake_failure(const std::error_code& ec) const;

  // True when the peer's verified certificate names `name` (see certificate_names); always true
  // for plain TCP, which has no certificate. Call after handshake().
  [[nodiscard]] bool peer_certificate_names(const std::string& name) const;

  void close() noexcept;
  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] bool tls() const noexcept { return tls_ != nullptr; }

 private:
  asio::ip::tcp::socket& socket() noexcept;
  [[nodiscard]] const asio::ip::tcp::socket& socket() const noexcept;

  void watch_verification();

  asio::ip::tcp::socket plain_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
  // The first certificate verification failure of the handshake, described; empty if none.
  std::string verify_failure_;
};

}  // namespace coraft::net
