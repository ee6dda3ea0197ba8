#include "net/stream.hpp"

#include <fcntl.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <coraft/text.hpp>

#include "net/log_guard.hpp"

namespace coraft::net {

void close_on_exec(int native_handle) noexcept {
  const int flags = ::fcntl(native_handle, F_GETFD);
  if (flags >= 0) ::fcntl(native_handle, F_SETFD, flags | FD_CLOEXEC);
}

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// The identity rule: a DNS subjectAltName equal to `name`, or, only when the certificate has no
// DNS subjectAltName at all, a subject common name equal to it. Wildcards never match, so a
// certificate for "*" or "node-*" names no node.
bool names(X509* cert, const std::string& name) {
  if (cert == nullptr) return false;
  unsigned flags = X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
  return X509_check_host(cert, name.data(), name.size(), flags, nullptr) == 1;
}

// The certificate's subject as one line, escaped and bounded: a peer chose it.
std::string subject_of(X509* cert) {
  if (cert == nullptr) return "none";
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string subject = printable(std::string_view(data, n > 0 ? static_cast<std::size_t>(n) : 0));
  BIO_free(bio);
  return subject;
}

}  // namespace

bool certificate_names(asio::ssl::context& ctx, const std::string& name) {
  return names(SSL_CTX_get0_certificate(ctx.native_handle()), name);
}

Stream::Stream(const asio::any_io_executor& ex, asio::ssl::context* tls) : plain_(ex) {
  if (tls) {
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(ex, *tls);
    watch_verification();
  }
}

Stream::Stream(asio::ip::tcp::socket socket, asio::ssl::context* tls)
    : plain_(socket.get_executor()) {
  if (tls) {
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(socket), *tls);
    watch_verification();
  } else {
    plain_ = std::move(socket);
  }
}

void Stream::watch_verification() {
  // OpenSSL's own error says only "certificate verify failed"; record which check failed and
  // on which certificate. The outcome itself is OpenSSL's: this only watches.
  std::error_code ignored;
  tls_->set_verify_callback(
      [this](bool preverified, asio::ssl::verify_context& ctx) {
        if (!preverified && verify_failure_.empty()) {
          X509_STORE_CTX* store = ctx.native_handle();
          int error = X509_STORE_CTX_get_error(store);
          verify_failure_ =
              detail::concat(X509_verify_cert_error_string(error), " (certificate ",
                             X509_STORE_CTX_get_error_depth(store), " of the chain, subject '",
                             subject_of(X509_STORE_CTX_get_current_cert(store)), "')");
        }
        return preverified;
      },
      ignored);
}

std::string Stream::handshake_failure(const std::error_code& ec) const {
  std::string text = ec.message();
  if (!verify_failure_.empty()) text += ": " + verify_failure_;
  return text;
}

Stream::~Stream() = default;

asio::ip::tcp::socket& Stream::socket() noexcept {
  return tls_ ? tls_->next_layer() : plain_;
}
const asio::ip::tcp::socket& Stream::socket() const noexcept {
  return tls_ ? tls_->next_layer() : plain_;
}

asio::awaitable<std::error_code> Stream::connect(
    const std::vector<asio::ip::tcp::endpoint>& endpoints) {
  auto [ec, endpoint] = co_await asio::async_connect(socket(), endpoints, use_tuple);
  if (!ec) {
    close_on_exec(socket().native_handle());
    std::error_code ignored;
    socket().set_option(asio::ip::tcp::no_delay(true), ignored);
  }
  co_return ec;
}

asio::awaitable<std::error_code> Stream::handshake(bool client) {
  if (!tls_) co_return std::error_code();
  auto type = client ? asio::ssl::stream_base::client : asio::ssl::stream_base::server;
  auto [ec] = co_await tls_->async_handshake(type, use_tuple);
  co_return ec;
}

asio::awaitable<std::pair<std::error_code, std::size_t>> Stream::read_some(
    std::span<std::byte> into) {
  auto buffer = asio::buffer(into.data(), into.size());
  if (tls_) {
    auto [ec, n] = co_await tls_->async_read_some(buffer, use_tuple);
    co_return std::pair(ec, n);
  }
  auto [ec, n] = co_await plain_.async_read_some(buffer, use_tuple);
  co_return std::pair(ec, n);
}

asio::awaitable<std::error_code> Stream::write(const std::vector<asio::const_buffer>& bufs) {
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, bufs, use_tuple);
    co_return ec;
  }
  auto [ec, n] = co_await asio::async_write(plain_, bufs, use_tuple);
  co_return ec;
}

bool Stream::peer_certificate_names(const std::string& name) const {
  if (!tls_) return true;
  return names(SSL_get0_peer_certificate(tls_->native_handle()), name);
}

void Stream::close() noexcept {
  std::error_code ignored;
  socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

bool Stream::is_open() const noexcept {
  return socket().is_open();
}

}  // namespace coraft::net
