// A client of the replicated counter: finds the leader, retries, and increments exactly once.
//
// Blocking and single-threaded: one Client is one connection at a time and one request at a
// time. Run several Clients (one per thread) for concurrency.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace counter {

struct ClientOptions {
  std::vector<std::string> cluster;  // client addresses, "host:port"
  // The whole operation's budget, retries included.
  std::chrono::milliseconds timeout{10'000};
  // One attempt's budget (connect, send, answer), within `timeout`.
  std::chrono::milliseconds attempt_timeout{2'000};
  // The pause before retrying after a retryable refusal or a lost connection.
  std::chrono::milliseconds retry_pause{50};
};

// How an operation ended, in the exit status the CLI reports.
enum class Outcome : int {
  ok = 0,       // done; the answer is in the reply
  failed = 1,   // definitely not done
  unknown = 3,  // may or may not have taken effect (a timeout, a leader lost after the append)
};

struct Answer {
  Outcome outcome = Outcome::failed;
  Reply reply;          // the last reply received (for ok: the answer)
  std::string message;  // for failed and unknown: why
};

class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Adds `amount` exactly once: registers a session on first use, then sends the command under
  // one sequence number until a definite answer or the timeout, so retries never count twice.
  Answer incr(std::int64_t amount);
  // The value: linearizable, or the contacted server's own (`stale`).
  Answer get(bool stale);
  // Any other request (status, members, membership changes, transfer), sent to the leader (or,
  // with `any_server`, to the first server that answers), retried while the answer is
  // retryable and definite.
  Answer call(Request request, bool any_server);
  // Ends the session, if one was opened (best effort).
  void close_session();

  [[nodiscard]] std::uint64_t session() const noexcept { return session_; }

 private:
  struct Attempt;
  // One request, following the leader and retrying, until `deadline`. `unknown_on_loss`: the
  // request changes state, so a lost attempt makes the outcome unknown.
  Answer exchange(Request request, bool to_leader, bool changes_state,
                  std::chrono::steady_clock::time_point deadline);
  bool ensure_session(std::chrono::steady_clock::time_point deadline, Answer& failure);
  bool connect(const std::string& address, std::chrono::steady_clock::time_point deadline);
  void disconnect();
  // Sends `request` and reads its reply on the open connection; false if the connection failed.
  bool roundtrip(const Request& request, Reply& reply,
                 std::chrono::steady_clock::time_point deadline, bool& sent);

  static constexpr int redirects_before_pause = 3;

  ClientOptions o_;
  int fd_ = -1;
  std::string connected_;
  std::size_t next_ = 0;  // the cluster address to try next
  std::string leader_;    // the leader's client address, when known
  std::string silent_;    // the last address that did not answer, until it answers again
  std::uint64_t request_id_ = 0;
  std::uint64_t session_ = 0;
  std::uint64_t seq_ = 0;  // the last command's sequence number
};

}  // namespace counter
