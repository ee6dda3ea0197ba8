#include "client.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <coraft/error.hpp>
#include <coraft/sessions.hpp>

#include "server.hpp"

namespace counter {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::int64_t>(0, left.count()));
}

// Waits for `events` on `fd` until `deadline`; false on timeout or error.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const int left = remaining_ms(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, left);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool send_all(int fd, std::span<const std::byte> data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data = data.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool recv_all(int fd, std::span<std::byte> out, Clock::time_point deadline) {
  while (!out.empty()) {
    const ssize_t n = ::recv(fd, out.data(), out.size(), MSG_DONTWAIT);
    if (n > 0) {
      out = out.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLIN, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool is_session_errc(const Reply& r, coraft::SessionErrc e) {
  return r.domain == Domain::session && r.code == static_cast<std::uint16_t>(e);
}

}  // namespace

Client::Client(ClientOptions options) : o_(std::move(options)) {}

Client::~Client() {
  disconnect();
}

void Client::disconnect() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_.clear();
}

bool Client::connect(const std::string& address, Clock::time_point deadline) {
  if (fd_ >= 0 && connected_ == address) return true;
  disconnect();
  HostPort hp;
  if (!parse_host_port(address, hp)) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &found) != 0)
    return false;
  for (addrinfo* a = found; a && fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline)) {
      int err = 0;
      socklen_t len = sizeof err;
      r = (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) ? 0 : -1;
    }
    if (r == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      connected_ = address;
    } else {
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  return fd_ >= 0;
}

bool Client::roundtrip(const Request& request, Reply& reply, Clock::time_point deadline,
                       bool& sent) {
  const auto frame = encode(request);
  sent = false;
  if (!send_all(fd_, frame, deadline)) return false;
  sent = true;
  FrameAssembler in(reply_frame_bytes_max);
  while (!in.complete()) {
    if (!recv_all(fd_, in.want(), deadline)) return false;
    if (!in.filled()) return false;
  }
  auto decoded = decode_reply(in.frame());
  // Id 0 answers the connection rather than a request (it was refused, or a frame was bad).
  if (!decoded || (decoded->id != request.id && decoded->id != 0)) return false;
  reply = std::move(*decoded);
  return true;
}

Answer Client::exchange(Request request, bool to_leader, bool changes_state,
                        Clock::time_point deadline) {
  Answer answer;
  bool maybe_done = false;  // an earlier attempt may have taken effect
  std::string last_problem = "no server answered";
  int redirects = 0;  // leader hints followed in a row
  while (Clock::now() < deadline) {
    std::string address;
    if (to_leader && !leader_.empty()) {
      address = leader_;
    } else if (!o_.cluster.empty()) {
      address = o_.cluster[next_ % o_.cluster.size()];
    }
    const auto attempt_deadline = std::min(deadline, Clock::now() + o_.attempt_timeout);
    bool sent = false;
    Reply reply;
    request.id = ++request_id_;
    const bool answered = !address.empty() && connect(address, attempt_deadline) &&
                          roundtrip(request, reply, attempt_deadline, sent);
    if (!answered) {
      if (sent && changes_state) maybe_done = true;
      last_problem = "no answer from " + (address.empty() ? std::string("any server") : address);
      disconnect();
      if (address == leader_) leader_.clear();
      silent_ = address;
      ++next_;
      std::this_thread::sleep_for(
          std::min(o_.retry_pause, std::chrono::milliseconds(remaining_ms(deadline))));
      continue;
    }
    if (address == silent_) silent_.clear();
    if (reply.ok()) {
      answer.outcome = Outcome::ok;
      answer.reply = std::move(reply);
      if (to_leader) leader_ = address;
      return answer;
    }
    if (reply.domain == Domain::node && !reply.definite && changes_state) maybe_done = true;
    last_problem = reply.message;
    answer.reply = reply;
    if (reply.is(coraft::Errc::not_leader)) {
      // A server that has not yet noticed its leader's failure still names it: a hint naming
      // the server that just failed to answer is ignored.
      if (!reply.leader_address.empty() && reply.leader_address != address &&
          reply.leader_address != silent_) {
        leader_ = reply.leader_address;
        // Straight to the leader, unless servers with stale views keep naming each other.
        if (++redirects < redirects_before_pause) continue;
      } else {
        leader_.clear();
        ++next_;
      }
    } else if (reply.is(coraft::Errc::shutting_down)) {
      // That server is stopping: another one may serve the request.
      if (address == leader_) leader_.clear();
      ++next_;
    } else if (!reply.retryable && reply.definite) {
      answer.outcome = maybe_done ? Outcome::unknown : Outcome::failed;
      answer.message = reply.message;
      return answer;
    }
    redirects = 0;
    std::this_thread::sleep_for(
        std::min(o_.retry_pause, std::chrono::milliseconds(remaining_ms(deadline))));
  }
  answer.outcome = maybe_done ? Outcome::unknown : Outcome::failed;
  answer.message = "timed out: " + last_problem;
  return answer;
}

bool Client::ensure_session(Clock::time_point deadline, Answer& failure) {
  if (session_ != 0) return true;
  Request r;
  r.op = Op::register_session;
  // A register whose outcome is unknown is simply sent again: a session opened but never used
  // expires like any idle one.
  Answer a = exchange(r, true, false, deadline);
  if (a.outcome != Outcome::ok || a.reply.session == 0) {
    failure = a;
    failure.outcome = Outcome::failed;
    if (failure.message.empty()) failure.message = "the server named no session";
    return false;
  }
  session_ = a.reply.session;
  seq_ = 0;
  return true;
}

Answer Client::incr(std::int64_t amount) {
  const auto deadline = Clock::now() + o_.timeout;
  Answer failure;
  if (!ensure_session(deadline, failure)) return failure;
  Request r;
  r.op = Op::incr;
  r.session = session_;
  r.seq = ++seq_;
  // One command at a time: every earlier command has its answer, or its outcome was given up as
  // unknown; either way the table need not keep its reply (and an old attempt still in flight
  // can no longer apply).
  r.first_unacked = r.seq;
  r.amount = amount;
  Answer a = exchange(r, true, true, deadline);
  if (a.outcome != Outcome::ok && is_session_errc(a.reply, coraft::SessionErrc::session_expired)) {
    // The session ended while this command was in doubt: nothing can tell whether an earlier
    // attempt took effect. The next command opens a new session.
    session_ = 0;
  }
  return a;
}

Answer Client::get(bool stale) {
  Request r;
  r.op = Op::get;
  r.stale = stale;
  return exchange(r, !stale, false, Clock::now() + o_.timeout);
}

Answer Client::call(Request request, bool any_server) {
  const bool changes = request.op == Op::add_voter || request.op == Op::add_learner ||
                       request.op == Op::remove_server || request.op == Op::transfer;
  return exchange(std::move(request), !any_server, changes, Clock::now() + o_.timeout);
}

void Client::close_session() {
  if (session_ == 0) return;
  Request r;
  r.op = Op::close_session;
  r.session = session_;
  (void)exchange(r, true, false, Clock::now() + o_.attempt_timeout);
  session_ = 0;
}

}  // namespace counter
